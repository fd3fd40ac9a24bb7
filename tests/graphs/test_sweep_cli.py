"""`visrep graphs sweep` end to end on a 2k subset: 3 graphs (2 WS-flex + complete), 1 epoch,
and its resume: with 2 of the 3 graphs already in the JSONL only the third trains."""

import json

from conftest import requires_fmnist, visrep

from visrep.graphs.generate import GraphSpec
from visrep.graphs.models import matched_width

ARGS = ("graphs", "sweep", "--model", "mlp5", "--dataset", "fashion_mnist", "--graphs", "2",
        "--seeds", "1", "--epochs", "1", "--limit-train", "2000", "--limit-test", "500",
        "--grid", "6,6,2")  # fmt: skip


def _lines(path):
    return path.read_text().splitlines()


@requires_fmnist
def test_sweep_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    first = visrep(*ARGS, "--out", str(out), timeout=300)
    assert "3 graphs x 1 seeds: 0 done, 3 to train" in first.stderr
    rows = [json.loads(line) for line in _lines(out / "results.jsonl")]
    assert len(rows) == 3 and {r["kind"] for r in rows} == {"ws", "complete"}
    config = json.loads((out / "sweep_config.json").read_text())
    for r, d in zip(sorted(rows, key=lambda r: r["graph"]),
                    sorted(config["graphs"], key=lambda d: d["name"])):  # fmt: skip
        assert r["width"] == matched_width("mlp5", GraphSpec.from_dict(d).graph())
        assert 0 < r["top1"] <= 100 and r["seed"] == 1
    assert next(r for r in rows if r["kind"] == "complete")["width"] == 128
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["runs_done"] == 3 and "best_vs_complete" in summary["claim"]
    assert "| complete |" in (out / "sweep.md").read_text()

    # a kill after 2 of the 3 runs: keep two lines (marked) plus a torn third one
    kept = [json.dumps({**json.loads(line), "marker": True}) for line in _lines(out / "results.jsonl")[:2]]  # fmt: skip
    (out / "results.jsonl").write_text("\n".join(kept) + '\n{"graph": "torn')
    second = visrep(*ARGS, "--out", str(out), timeout=300)
    assert "2 done, 1 to train" in second.stderr
    rows2 = [json.loads(line) for line in _lines(out / "results.jsonl") if line.endswith("}")]
    assert len(rows2) == 3 and [r.get("marker") for r in rows2] == [True, True, None]
    assert {r["graph"] for r in rows2} == {r["graph"] for r in rows}
    assert json.loads((out / "sweep.json").read_text())["runs_done"] == 3
