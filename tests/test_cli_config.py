"""The command line's configs without a model: `--config FILE` (YAML / JSON) gives the same
overrides as the command line, `visrep show --format yaml|json` writes such a file, and
`recipes` / `show` never import torch."""

import json
import subprocess
import sys

import pytest

from visrep import cli
from visrep.config import ConfigError, config_file_text, read_config_file, save_json, to_dict
from visrep.configs import RECIPES, get_recipe, smoke


def train_config(*argv: str):
    """The config `visrep train ARGV` would run (nothing is trained)."""
    args, overrides = cli._parser().parse_known_args(["train", *argv])
    return cli.train_config(args, overrides)


@pytest.mark.parametrize(
    "argv", [["recipes"], ["show", "mae_fmnist"], ["show", "mae_fmnist", "--format", "yaml"]]
)
def test_recipes_and_show_never_import_torch(argv):
    """~4 s of importing torch to print names was the cost before (issue 14)."""
    code = (f"import sys, visrep.cli; assert visrep.cli.main({argv!r}) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mae_fmnist" in proc.stdout


def test_yaml_file_nested_and_json_file_dotted(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "recipe: mae_own\n"
        "data:\n  dataset: /imgs\n  crop_scale: [0.3, 1.0]\n  hflip: no\n"
        "optim: {epochs: 5, blr: 1e-4}\n"
        "method.mask_ratio: 0.6\n"
    )
    cfg = train_config("--config", str(tmp_path / "a.yaml"))
    assert cfg.recipe == "mae_own" and cfg.data.dataset == "/imgs"
    assert cfg.data.crop_scale == (0.3, 1.0) and cfg.data.hflip is False
    assert cfg.optim.epochs == 5 and cfg.optim.blr == 1e-4 and cfg.method.mask_ratio == 0.6
    (tmp_path / "b.json").write_text(json.dumps({"optim.epochs": 5, "data": {"mean": [0.5]}}))
    cfg = train_config("mae_fmnist", "--config", str(tmp_path / "b.json"))
    assert cfg.optim.epochs == 5 and cfg.data.mean == (0.5,)
    assert cfg.optim.blr == get_recipe("mae_fmnist").optim.blr  # the rest is the recipe's


def test_command_line_wins_over_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("recipe: mae_fmnist\noptim: {epochs: 5, batch_size: 16}\n")
    cfg = train_config("--config", str(f), "optim.epochs=7")  # the override is not a recipe
    assert cfg.optim.epochs == 7 and cfg.optim.batch_size == 16 and cfg.recipe == "mae_fmnist"
    cfg = train_config("mae_own", "--config", str(f), "--optim.epochs", "9")
    assert cfg.recipe == "mae_own" and cfg.optim.epochs == 9  # the named recipe wins too
    cfg = train_config("--smoke", "--config", str(f))
    assert cfg.optim.batch_size == 16 and cfg.data.limit == 256  # the file applies after --smoke


def test_unknown_key_in_the_file_is_the_command_line_error(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  epoch: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.epoch' \(did you mean"):
        train_config("mae_fmnist", "--config", str(f))
    assert cli.main(["train", "mae_fmnist", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visrep: error: unknown config key 'optim.epoch'")
    f.write_text("optim: {epochs: 0}\n")
    assert cli.main(["train", "mae_fmnist", "--config", str(f)]) == 2
    assert "optim.epochs must be >= 1, got 0" in capsys.readouterr().err  # ranges, as typed
    f.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(f)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="name a recipe"):
        train_config("--config", str(tmp_path / "empty.yaml"))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_show_file_trains_the_same_config(name, tmp_path):
    """show -> file -> train: every key of every recipe survives (tuples of sentences, floats
    such as log(1/0.07), empty tuples, booleans)."""
    f = tmp_path / "run.yaml"
    f.write_text(config_file_text(get_recipe(name), "yaml"))
    assert train_config("--config", str(f)) == get_recipe(name)
    assert train_config("--smoke", "--config", str(f)) == get_recipe(name)  # the file wins


@pytest.mark.parametrize("name", ["mae_fmnist", "cit_fmnist"])
def test_json_and_a_runs_config_json_train_the_same_config(name, tmp_path, capsys):
    assert cli.main(["show", name, "--format", "json"]) == 0
    (tmp_path / "show.json").write_text(capsys.readouterr().out)
    assert train_config("--config", str(tmp_path / "show.json")) == get_recipe(name)
    cfg = smoke(get_recipe(name))
    save_json(to_dict(cfg, "mae"), tmp_path / "config.json")  # as a run folder holds it
    assert train_config("--config", str(tmp_path / "config.json")) == cfg


def test_resume_takes_only_the_keys_it_allows_from_the_file(tmp_path):
    f = tmp_path / "more.yaml"
    f.write_text("recipe: mae_fmnist\n")
    with pytest.raises(ConfigError, match="drop the recipe"):
        train_config("--resume", str(tmp_path), "--config", str(f))
    f.write_text("method: {mask_ratio: 0.5}\n")
    with pytest.raises(ConfigError, match="cannot change method.mask_ratio=0.5"):
        train_config("--resume", str(tmp_path), "--config", str(f))


class Model:
    backbone = None


def test_eval_reads_the_file_under_the_command_line(tmp_path, monkeypatch):
    import visrep.evals.run
    import visrep.runs

    seen = {}
    cfg = smoke(get_recipe("mae_fmnist"))
    monkeypatch.setattr(visrep.runs, "load_run", lambda ckpt, device: (cfg, Model()))
    monkeypatch.setattr(visrep.evals.run, "evaluate",
                        lambda backbone, data, ev, **kw: seen.setdefault("eval", ev) and {})  # fmt: skip
    f = tmp_path / "eval.yaml"
    f.write_text("recipe: ignored\neval: {knn_k: 5, knn_temperature: 0.1}\n")
    argv = ["eval", "knn", "--ckpt", str(tmp_path), "--config", str(f), "eval.knn_k=7"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(tmp_path / "m.json")]) == 0
    assert seen["eval"].knn_k == 7 and seen["eval"].knn_temperature == 0.1
