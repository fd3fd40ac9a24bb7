"""benchmarks/finetune_check.py: every fine-tuning row is one protocol plus the row's changes
(benchmarks/ is not a package: imported by path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import finetune_check  # noqa: E402
import mae_mask_ratio  # noqa: E402

# the fixed-step protocol of docs/results.md's fine-tuning tables (40 steps of batch 64)
DOCUMENTED = ["optim.blr=1e-2", "optim.batch_size=64", "optim.epochs=1", "optim.warmup_epochs=0.1",
              "eval.limit_train=2560", "eval.limit_test=2000", "run.threads=1",
              "run.progress=False"]  # fmt: skip


def test_protocol_is_the_documented_one_and_shared():
    assert finetune_check.FINETUNE == DOCUMENTED
    assert mae_mask_ratio.FINETUNE is finetune_check.FINETUNE


def test_row_change_replaces_the_protocol_key_and_a_finished_row_is_read_back(
    tmp_path, monkeypatch
):
    calls, real_run = [], finetune_check.subprocess.run

    def fake_run(cmd, **kw):
        if "finetune" not in cmd:  # `uptime`, recorded beside each row
            return real_run(cmd, **kw)
        calls.append(cmd)
        Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps({"finetune_top1": 0.5}))

    monkeypatch.setattr(finetune_check.subprocess, "run", fake_run)
    monkeypatch.setattr(finetune_check, "matmul_gflops", lambda: 100.0)  # (a 10 s probe)
    out_json, ft_dir = tmp_path / "row.json", tmp_path / "ft"
    row = finetune_check.finetune(tmp_path, out_json, "random", ft_dir, **{"optim.blr": "1e-3"})
    (cmd,) = calls
    assert cmd[cmd.index("finetune") + 1 : cmd.index("finetune") + 3] == ["--ckpt", str(tmp_path)]
    assert [a for a in cmd if a.startswith("optim.blr=")] == ["optim.blr=1e-3"]
    assert "method.init=random" in cmd and "eval.limit_train=2560" in cmd
    assert cmd[-1] == f"run.out_dir={ft_dir}"
    assert row["metrics"] == {"finetune_top1": 0.5} and row["wall_s"] >= 0
    assert "optim.blr=1e-3" in row["command"]
    again = finetune_check.finetune(tmp_path, out_json, "random", ft_dir)
    assert len(calls) == 1 and "wall_s" not in again and again["metrics"] == row["metrics"]


def test_every_row_names_a_known_run_and_only_protocol_or_method_keys():
    for source, init, changes in finetune_check.ROWS.values():
        assert source == "mae" or source.startswith("convnext")
        assert init in ("pretrained", "random")
        assert all(k in finetune_check.PROTOCOL or k.startswith("method.") for k in changes)
