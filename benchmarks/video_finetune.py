"""End-to-end fine-tuning of a video encoder after MAE-ST pre-training vs the same encoder at
random init, at a fixed step count (docs/results.md, video section).

MAE-ST's main evaluation (Feichtenhofer et al., NeurIPS 2022; facebookresearch/mae_st
`main_finetune.py`) is fine-tuning, shrunk here to a CPU: `visrep eval finetune` of an MAE-ST
run on the encoder of benchmarks/video_methods.py (video ViT-Tiny, 6 blocks, 2×16×16
tubelets, 8 × 64 × 64 clips at τ = 2: 64 tokens) with the video defaults (AdamW, layer decay
0.75, drop path 0.1, dropout 0.5, label smoothing 0.1, clip_grad 5) at blr 1e-2 (lr 6.25e-4
at batch 16; the image check, finetune_check.py, found 1e-2 ahead of 1e-3 at a few dozen
steps), for the same 500 steps (5 epochs) from the pre-trained weights and from the
backbone's own untrained init (`method.init=random`). Pre-trained runs: that table's
`mae_st` (60 steps of 32 videos) and the same recipe for 625 steps (5 epochs of the 4,000
train videos, trained here when missing). Each row once with seed 0 and once with seed 1
(head init, clip draws, dropout). Training: the first 1,600 Moving Fashion-MNIST train videos, class labels; test:
clip-level top-1 / top-5 on 400 test videos, 2 temporal views × 1 centre crop per video,
softmax averaged. The `*_direction` rows train and score on the motion-direction labels
instead (`--labels direction`: 8 directions, chance 0.125), the label family a single frame
cannot predict, at the same budget; the `*_direction_1ep*` rows at a fifth of it (1 epoch,
100 steps, warmup 0.1 epoch), seeds 0 and 1. The `p8_*` rows test MAE-ST's masking-ratio
claim the paper's way (by fine-tuning), on the direction labels for 3 epochs (300 steps):
the shipped recipe's encoder (ViT-Tiny/8, 12 blocks, 256 tokens) pre-trained 240 steps at
90 % and at 75 % masking (`SOURCES`), and its random init, with seeds 0-3; the `p8_*_pseed1`
rows the same pair pre-trained from seed 1, with fine-tuning seeds 0-3. The
`mae_st_625*_direction_1ep*` rows test the same claim on the 64-token encoder pre-trained 625
steps, the length at which its pre-training pays off in fine-tuning: 90 % and 75 % masking
(`_mask75`), pre-training seeds 0 and 1 (`_pseed1`), fine-tuning seeds 0-3 at 100 steps,
beside random init with the same four seeds; the `mae_st_2500*` rows the same after four
times the pre-training. The side-by-side rows (`SIDE_BY_SIDE`) fine-tune every video method
pre-trained on the same encoder for the same 625 steps (MAE-ST at 90 %, ρBYOL, ρMoCo,
ρSimCLR and ρSwAV at ρ = 2, video MaskFeat: their `*_mfmnist` recipes, `OTHERS`; ρMoCo and
ρBYOL at blr 4e-3 and 1e-3, ρSwAV at 1e-3 too, seed 0, and with 100 and 1,000 prototypes;
ρMoCo at ρ = 1 (`rho_moco_rho1_blr1e-3`, the ρ claim: `rho_summary`); video MaskFeat at blr
1e-3 (the recipe then) and 4e-3 (its recipe's since), and at 4e-3 from the video ViT's own
init, `_binit`: `method.encoder_init=backbone`)
from pre-training seeds 0 and 1 (and 2 for ρBYOL and ρMoCo: `PSEEDS`), on the direction
labels (`*_direction_1ep*`) and on the class labels (`*_class_1ep*`, 100 steps too),
fine-tuning seeds 0-3, beside random init on each; `maskfeat_video_625_direction` gives
video MaskFeat 500 direction steps, and `*_direction_3ep_seed{0..3}` 300 beside random
init; video MaskFeat from its own init (`maskfeat_video_0*`: SlowFast's, saved by one step
at lr 0) and after 2,500 pre-training steps (`maskfeat_video_2500*`), pre-training seeds 0
and 1, on both families the same way (`MASKFEAT_LONG`); video MaskFeat on its official
backbone family, the MViTv2 of `maskfeat_video_mvit_mfmnist` (its own geometry, no ViT
overrides), 625 steps at blr 4e-3 from pre-training seeds 0-2
(`maskfeat_video_mvit_blr4e-3_625*`), at its recipe's blr 1e-3 from seed 0
(`maskfeat_video_mvit_blr1e-3_625`) and for 2,500 steps at 4e-3 from seed 0
(`maskfeat_video_mvit_blr4e-3_2500`), beside that MViTv2 at random init
(`random_init_mvit_*`), on both families the same way (`MVIT_STARTS`). `MADE_HERE` trains the
forty-five pre-trainings, seconds to 80 min each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_finetune.py [--rows NAME ...] [--jobs N]

(a NAME may be a shell-style pattern, quoted: `--rows 'mae_st_625*_direction_1ep*'`).

Writes benchmarks/results/video_finetune.{json,md}; the fine-tuning runs go to
runs/video_finetune/NAME (a row already in the JSON is kept unless --rerun).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import as_finished, command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

from visrep.logger import read_log  # noqa: E402

RESULTS = HERE / "results"
RUNS = Path("runs/video_finetune")
# pre-trained runs: the side-by-side table's 60-step MAE-ST, the 256-token pairs below, and
# (added after MADE_HERE) the runs this script pre-trains itself
SOURCES = {"mae_st_60": Path("runs/video_methods/mae_st"),
           # MAE-ST's masking-ratio claim (Feichtenhofer et al. 2022, Fig. 2: 90 % beats 75 %
           # after fine-tuning) on the shipped recipe's tokens (ViT-Tiny/8, 12 blocks, 256
           # tokens), 240 pre-training steps of 32 each: benchmarks/video_methods.py --only
           # mae_st mae_st_mask75 --set backbone.patch_size=8 backbone.depth=12
           # optim.epochs=4 --runs-dir runs/video_mask_ratio_p8
           "mae_st_p8_90": Path("runs/video_mask_ratio_p8/mae_st"),
           "mae_st_p8_75": Path("runs/video_mask_ratio_p8/mae_st_mask75"),
           # the same pair pre-trained from another seed (`--set ... run.seed=1 --runs-dir
           # runs/video_mask_ratio_p8_pseed1`): the pre-training noise of the comparison
           "mae_st_p8_90_pseed1": Path("runs/video_mask_ratio_p8_pseed1/mae_st"),
           "mae_st_p8_75_pseed1": Path("runs/video_mask_ratio_p8_pseed1/mae_st_mask75")}  # fmt: skip
# pre-trainings this script makes when missing: the 625-step recipe (5 epochs of the 4,000
# train videos) at 90 %, and, for the masking-ratio claim at the length where this encoder's
# pre-training pays off in fine-tuning, at 75 % (`_mask75`) and from pre-training seed 1
# (`_pseed1`: its init and its masks); the same four at four times the length (2,500 steps);
# and every other video method on the same encoder at the same 625 steps (name -> recipe,
# overrides; the ρ recipes at ρ = 2 already have this encoder)
PRETRAIN = ["backbone.patch_size=16", "backbone.depth=6", "data.limit=4000",
            "optim.batch_size=32", "run.budget_minutes=0", "run.threads=1",
            "run.progress=False"]  # fmt: skip
# video MaskFeat's own backbone family keeps its recipe's MViTv2 (no ViT overrides)
MVIT = "maskfeat_video_mvit_mfmnist"
PRETRAIN_MVIT = [x for x in PRETRAIN if not x.startswith("backbone.")]
LENGTHS = {"625": ["optim.epochs=5", "optim.warmup_epochs=0.5"],
           "2500": ["optim.epochs=20", "optim.warmup_epochs=2"]}  # fmt: skip
# pre-training seeds by name suffix (seed 2 only for the ρBYOL / ρMoCo runs below)
PSEEDS = {"": [], "_pseed1": ["run.seed=1"], "_pseed2": ["run.seed=2"]}
MADE_HERE: dict[str, tuple[str, list[str]]] = {}
for _steps, _length in LENGTHS.items():
    for _ratio, _r in (("", []), ("_mask75", ["method.mask_ratio=0.75"])):
        for _pseed in ("", "_pseed1"):
            _p = PSEEDS[_pseed]
            MADE_HERE[f"mae_st_{_steps}{_ratio}{_pseed}"] = ("mae_st_mfmnist", [*_length, *_r, *_p])
# name -> (recipe, overrides). MaskFeat's 2 x 2-unit boxes do not fit a 4 x 4 token grid:
# 1-token units, 8-px HOG cells (as benchmarks/video_methods.py). `rho_moco` ran when its
# recipe's lr was the ρ recipes' shared blr 4e-3, where its loss rose after the queue filled;
# `rho_moco_blr1e-3` is the recipe's lr since (MoCo v3's ViT instability at high lr: Chen,
# Xie, He, ICCV 2021, Sec. 4). The same lower lr for ρBYOL, the other momentum-encoder
# method, whose seed 0 lagged on direction, and for ρSwAV (pre-training seed 0 only), whose
# class result is the weak one; ρSwAV with the official 1,000 prototypes (`rho_swav_k1000`,
# pre-training seeds 0 and 1) for the same reason, its recipe's count since: `rho_swav` and
# `rho_swav_blr1e-3` pin the 100 they ran with.
_MF = ["method.cell_size=8", "method.mask_unit=1"]  # video MaskFeat on 4 x 4 tokens (above)
OTHERS = {"rho_byol": ("rho_byol_mfmnist", []),
          "rho_byol_blr1e-3": ("rho_byol_mfmnist", ["optim.blr=1e-3"]),
          "rho_moco": ("rho_moco_mfmnist", ["optim.blr=4e-3"]),
          "rho_moco_blr1e-3": ("rho_moco_mfmnist", ["optim.blr=1e-3"]),
          "rho_moco_rho1_blr1e-3": ("rho_moco_mfmnist", ["optim.blr=1e-3", "data.clips=1"]),
          "rho_simclr": ("rho_simclr_mfmnist", []),
          "rho_swav": ("rho_swav_mfmnist", ["method.prototypes=100"]),
          "rho_swav_blr1e-3": ("rho_swav_mfmnist", ["optim.blr=1e-3", "method.prototypes=100"]),
          "rho_swav_k1000": ("rho_swav_mfmnist", ["method.prototypes=1000"]),
          "maskfeat_video": ("maskfeat_video_mfmnist", [*_MF, "optim.blr=1e-3"]),
          "maskfeat_video_blr4e-3": ("maskfeat_video_mfmnist", [*_MF, "optim.blr=4e-3"]),
          "maskfeat_video_blr4e-3_binit": ("maskfeat_video_mfmnist",
                                           [*_MF, "optim.blr=4e-3", "method.encoder_init=backbone"])}  # fmt: skip
for _pseed, _p in PSEEDS.items():
    for _method, (_recipe, _o) in OTHERS.items():
        if _method == "rho_swav_blr1e-3" and _pseed:
            continue
        if _pseed != "_pseed2" or _method.startswith(("rho_byol", "rho_moco")):  # seed-dependent
            MADE_HERE[f"{_method}_625{_pseed}"] = (_recipe, [*LENGTHS["625"], *_o, *_p])
# video MaskFeat's pre-training ends at the loss of predicting the mean HOG after 625 steps
# (benchmarks/maskfeat_video_target.py): the same run four times as long, and its start
# (`_0`: video MaskFeat's own init, SlowFast's, which `method.init=random` does not replay;
# one step at lr 0 on 32 videos saves it, with the frozen k-NN of that init); pre-training
# seeds 0 and 1
MASKFEAT_LONG = ["maskfeat_video_0", "maskfeat_video_0_pseed1", "maskfeat_video_2500",
                 "maskfeat_video_2500_pseed1"]  # fmt: skip
for _pseed in ("", "_pseed1"):
    _o = [*OTHERS["maskfeat_video"][1], *PSEEDS[_pseed]]
    MADE_HERE[f"maskfeat_video_2500{_pseed}"] = ("maskfeat_video_mfmnist", [*LENGTHS["2500"], *_o])
    MADE_HERE[f"maskfeat_video_0{_pseed}"] = (
        "maskfeat_video_mfmnist",
        [*_o, "optim.epochs=1", "optim.warmup_epochs=0", "data.limit=32", "optim.blr=0"],
    )
# video MaskFeat on its official backbone family: the recipe's MViTv2 (`MVIT`), which learns
# to read a masked token's HOG from its neighbours where the ViT does not
# (benchmarks/maskfeat_video_target.py, `context_hog_masked_mvit`), the same 625 steps at blr
# 4e-3 (the ViT recipe's), pre-training seeds 0-2, at blr 1e-3 (its own recipe's), seed 0,
# and four times as long at 4e-3, seed 0; fine-tuned beside the MViTv2 at random init
# (`random_init_mvit_*`: its own init, the one its pre-training starts from).
# (steps, blr) -> runs, pre-training seeds 0, 1, 2 in turn
MVIT_STARTS = {("625", "4e-3"): [f"maskfeat_video_mvit_blr4e-3_625{p}" for p in PSEEDS],
               ("625", "1e-3"): ["maskfeat_video_mvit_blr1e-3_625"],
               ("2500", "4e-3"): ["maskfeat_video_mvit_blr4e-3_2500"]}  # fmt: skip
MVIT_RUNS = [run for runs in MVIT_STARTS.values() for run in runs]
for (_steps, _lr), _runs in MVIT_STARTS.items():
    for _pseed, _run in zip(PSEEDS, _runs, strict=False):
        MADE_HERE[_run] = (MVIT, [*LENGTHS[_steps], f"optim.blr={_lr}", *PSEEDS[_pseed]])
SOURCES |= {name: RUNS / f"pretrain_{name}" for name in MADE_HERE}
PROTOCOL = {"eval.limit_train": "1600", "eval.limit_test": "400", "optim.batch_size": "16",
            "optim.epochs": "5", "optim.warmup_epochs": "0.5", "optim.blr": "1e-2",
            "run.threads": "1", "run.progress": "False"}  # fmt: skip
# row -> (pre-trained run, init, extra overrides); random init is the same architecture at
# the backbone's own untrained init (the same for every source with this backbone and seed)
ROWS = {
    "mae_st": ("mae_st_60", "pretrained", {}),
    "random_init": ("mae_st_60", "random", {}),
    "mae_st_625": ("mae_st_625", "pretrained", {}),
    "mae_st_seed1": ("mae_st_60", "pretrained", {"run.seed": "1"}),
    "random_init_seed1": ("mae_st_60", "random", {"run.seed": "1"}),
    "mae_st_625_seed1": ("mae_st_625", "pretrained", {"run.seed": "1"}),
    "mae_st_625_direction": ("mae_st_625", "pretrained", {"method.labels": "direction"}),
    "mae_st_direction": ("mae_st_60", "pretrained", {"method.labels": "direction"}),
    "random_init_direction": ("mae_st_60", "random", {"method.labels": "direction"}),
}  # fmt: skip
# the masking-ratio pair and its random init (the same architecture and seed), direction
# labels, 3 epochs (300 steps of 16): the 12-block encoder does not leave chance in 100
THREE = {"method.labels": "direction", "optim.epochs": "3", "optim.warmup_epochs": "0.3"}
for _src, _init, _row in (("mae_st_p8_90", "pretrained", "p8_mask90"),
                          ("mae_st_p8_75", "pretrained", "p8_mask75"),
                          ("mae_st_p8_90", "random", "p8_random")):  # fmt: skip
    ROWS[f"{_row}_direction_3ep"] = (_src, _init, THREE)
    for _seed in ("1", "2", "3"):
        ROWS[f"{_row}_direction_3ep_seed{_seed}"] = (_src, _init, THREE | {"run.seed": _seed})
# pre-training seed 1 (`_pseed1`), both ratios, fine-tuning seeds 0-3 (a random init is drawn
# from the fine-tuning seed, so the p8_random rows above already are its baseline)
for _src, _row in (("mae_st_p8_90_pseed1", "p8_mask90"), ("mae_st_p8_75_pseed1", "p8_mask75")):
    ROWS[f"{_row}_pseed1_direction_3ep"] = (_src, "pretrained", THREE)
    for _seed in ("1", "2", "3"):
        ROWS[f"{_row}_pseed1_direction_3ep_seed{_seed}"] = (_src, "pretrained",
                                                            THREE | {"run.seed": _seed})  # fmt: skip
# direction at a fifth of the budget (1 epoch = 100 steps of 16), where 500 steps saturate
SHORT = {"method.labels": "direction", "optim.epochs": "1", "optim.warmup_epochs": "0.1"}
for _seed in ("0", "1"):
    _tag = "" if _seed == "0" else "_seed1"
    ROWS |= {f"mae_st_625_direction_1ep{_tag}": ("mae_st_625", "pretrained", SHORT | {"run.seed": _seed}),
             f"mae_st_direction_1ep{_tag}": ("mae_st_60", "pretrained", SHORT | {"run.seed": _seed}),
             # random init: the same backbone as both sources, so either run's config serves
             f"random_init_direction_1ep{_tag}": ("mae_st_625", "random", SHORT | {"run.seed": _seed})}  # fmt: skip
# the masking-ratio claim on the 625- and 2,500-step pre-trainings (64 tokens: 6 kept at 90 %,
# 16 at 75 %), two pre-training seeds x fine-tuning seeds 0-3, beside random init with the
# same four seeds; every video method after 625 steps the same way, and (`_class_1ep`) on
# the class labels at the same 100 steps
CLASS_SHORT = {k: v for k, v in SHORT.items() if k != "method.labels"}
SIDE_BY_SIDE = [
    f"{m}_625{p}" for p in PSEEDS for m in ("mae_st", *OTHERS) if f"{m}_625{p}" in MADE_HERE
]
for _seed in ("0", "1", "2", "3"):
    _tag = "" if _seed == "0" else f"_seed{_seed}"
    for _src in MADE_HERE:
        ROWS.setdefault(
            f"{_src}_direction_1ep{_tag}", (_src, "pretrained", SHORT | {"run.seed": _seed})
        )
    ROWS.setdefault(
        f"random_init_direction_1ep{_tag}", ("mae_st_625", "random", SHORT | {"run.seed": _seed})
    )
    for _src, _init in [*((x, "pretrained") for x in SIDE_BY_SIDE), ("mae_st_625", "random")]:
        _row = _src if _init == "pretrained" else "random_init"
        ROWS[f"{_row}_class_1ep{_tag}"] = (_src, _init, CLASS_SHORT | {"run.seed": _seed})
# video MaskFeat stays at chance after 100 direction steps: at 500 (where every other start
# saturates) and at 300 beside random init (seeds 0-3) it shows whether it is only slower
ROWS["maskfeat_video_625_direction"] = ("maskfeat_video_625", "pretrained", {"method.labels": "direction"})  # fmt: skip
for _seed in ("0", "1", "2", "3"):
    for _row, _init in (("maskfeat_video_625", "pretrained"), ("random_init", "random")):
        ROWS[f"{_row}_direction_3ep_seed{_seed}"] = ("maskfeat_video_625", _init, THREE | {"run.seed": _seed})  # fmt: skip
    # its start and its four-times-longer pre-training on the class labels too (the direction
    # rows come from the MADE_HERE loop above)
    _tag = "" if _seed == "0" else f"_seed{_seed}"
    for _src in [*MASKFEAT_LONG, *MVIT_RUNS]:
        ROWS[f"{_src}_class_1ep{_tag}"] = (_src, "pretrained", CLASS_SHORT | {"run.seed": _seed})
    for _family, _extra in (("direction", SHORT), ("class", CLASS_SHORT)):
        ROWS[f"random_init_mvit_{_family}_1ep{_tag}"] = (MVIT_RUNS[0], "random",
                                                         _extra | {"run.seed": _seed})  # fmt: skip


def pretrain_args(name: str) -> list[str]:
    """The `visrep` arguments that pre-train `name` of MADE_HERE: its recipe, PRETRAIN (the
    MViTv2 recipe: PRETRAIN_MVIT), its overrides and its run folder."""
    recipe, overrides = MADE_HERE[name]
    base = PRETRAIN_MVIT if recipe == MVIT else PRETRAIN
    return ["train", recipe, *base, *overrides, f"run.out_dir={SOURCES[name]}"]


def pretrain(name: str) -> dict:
    """Pre-training `name` of MADE_HERE (`pretrain_args`), trained unless its run has
    finished (metrics.json), resumed (`visrep train --resume`) when a stopped one left a
    checkpoint; its command, timing and frozen video k-NN."""
    out = SOURCES[name]
    args = pretrain_args(name)
    info = {"name": name, "command": "visrep " + " ".join(args), "run_dir": str(out)}
    if not (out / "metrics.json").is_file():
        if (out / "checkpoint.pt").is_file():
            args = ["train", "--resume", str(out)]
            info["resumed"] = read_log(out)[-1]["step"]
        else:
            shutil.rmtree(out, ignore_errors=True)
        info |= {"uptime_before": uptime(), "matmul_gflops_before": round(matmul_gflops(), 1)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "visrep.cli", *args], check=True)
        info |= {"wall_s": round(time.perf_counter() - t0, 1), "uptime_after": uptime()}
    metrics = json.loads((out / "metrics.json").read_text())
    log = read_log(out)
    losses = [r["train/loss"] for r in log if "train/loss" in r]
    return info | {k: metrics[k] for k in ("train_steps", "knn_top1", "init_knn_top1",
                                           "knn_direction_top1", "init_knn_direction_top1")} | {
        "loss_first_last": [losses[0], losses[-1]]}  # fmt: skip


def finetune(name: str, source: str, init: str, extra: dict[str, str]) -> dict:
    """`visrep eval finetune` of `source` from `init` under PROTOCOL (+ `extra`); its metrics,
    command and wall time."""
    out_json, out_dir = RUNS / f"{name}.json", RUNS / name
    keys = PROTOCOL | extra
    cmd = ["eval", "finetune", "--ckpt", str(SOURCES[source]), "--out", str(out_json),
           f"method.init={init}", *(f"{k}={v}" for k, v in keys.items()),
           f"run.out_dir={out_dir}"]  # fmt: skip
    row = {"name": name, "source": source, "init": init, "seed": int(keys.get("run.seed", 0)),
           "labels": keys.get("method.labels", "class"),
           "command": "visrep " + " ".join(cmd),
           "uptime_before": uptime(), "matmul_gflops_before": round(matmul_gflops(), 1)}  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visrep.cli", *cmd], check=True)
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    metrics = json.loads(out_json.read_text())
    metrics.pop("config", None)
    return row | {"uptime_after": uptime(), "metrics": metrics}


def run_row(name: str) -> dict:
    """Row `name` of ROWS fine-tuned afresh; its results row (with the first logged loss)."""
    (RUNS / f"{name}.json").unlink(missing_ok=True)
    shutil.rmtree(RUNS / name, ignore_errors=True)  # a fresh run
    row = finetune(name, *ROWS[name])
    log = read_log(RUNS / name)
    return row | {"first_loss": next(r["train/loss"] for r in log if "train/loss" in r)}


def seed_top1(
    out: dict, family: str, starts: list[str], random: str = "random_init"
) -> dict[str, dict[int, float]]:
    """Top-1 of the 100-step rows on `family` ("direction" / "class") by start and fine-tuning
    seed: the pre-trained rows of each source in `starts`, and random init ("random init":
    the rows `{random}_{family}_1ep*`, the video ViT's unless named)."""
    top1: dict[str, dict[int, float]] = {}
    for r in out["rows"]:
        if f"_{family}_1ep" not in r["name"]:
            continue
        if r["init"] == "random" and r["name"].startswith(f"{random}_{family}_1ep"):
            start = "random init"
        elif r["init"] == "pretrained" and r.get("source") in starts:
            start = r["source"]
        else:
            continue
        top1.setdefault(start, {})[r.get("seed", 0)] = r["metrics"]["finetune_top1"]
    return {k: top1[k] for k in [*starts, "random init"] if k in top1}


def paired(top1: dict[str, dict[int, float]], a: list[str], b: list[str]) -> str:
    """Mean of top-1 `a[i]` minus `b[i]` paired by fine-tuning seed over i, its standard
    error and how many pairs `a` leads ("" under two pairs)."""
    d = [top1[x][k] - top1[y][k] for x, y in zip(a, b, strict=True)
         if x in top1 and y in top1 for k in top1[x] if k in top1[y]]  # fmt: skip
    if len(d) < 2:
        return ""
    mean = sum(d) / len(d)
    se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
    return f"{mean:+.3f} (SE {se:.3f}, {sum(x > 0 for x in d)} of {len(d)} ahead)"


def seed_table(top1: dict[str, dict[int, float]]) -> str:
    """Top-1 by start (rows) and fine-tuning seed (columns), and the mean."""
    seeds = sorted({k for v in top1.values() for k in v})
    rows = [[f"`{start}`", *(f"{v[k]:.3f}" if k in v else "" for k in seeds),
             f"**{sum(v.values()) / len(v):.3f}**"] for start, v in top1.items()]  # fmt: skip
    return md_table(["start", *(f"seed {k}" for k in seeds), "mean"], rows)


DIFF_HEADERS = ["pre-training steps", "90 % minus 75 %", "90 % minus random init",
                "75 % minus random init"]  # fmt: skip


def ratio_summary(out: dict) -> str:
    """The masking-ratio rows (`mae_st_{625,2500}*_direction_1ep*` and random init at the same
    fine-tuning seeds): top-1 by fine-tuning seed and its mean per start, then per pre-training
    length 90 % minus 75 % and 90 % minus random init, paired by pre-training and fine-tuning
    seed (mean, standard error, pairs ahead)."""
    top1 = seed_top1(out, "direction", [n for n in MADE_HERE if n.startswith("mae_st_")])
    if not top1:
        return ""
    diffs = []
    for steps in LENGTHS:
        n90 = [f"mae_st_{steps}", f"mae_st_{steps}_pseed1"]
        n75 = [f"mae_st_{steps}_mask75", f"mae_st_{steps}_mask75_pseed1"]
        rnd = ["random init"] * 2
        row = [paired(top1, n90, n75), paired(top1, n90, rnd), paired(top1, n75, rnd)]
        if any(row):
            diffs.append([steps, *row])
    return (
        "\n\n## Masking ratio on 64 tokens: direction top-1 after 100 fine-tuning steps\n\n"
        + seed_table(top1)
        + "\n\nPaired by pre-training seed and fine-tuning seed:\n\n"
        + md_table(DIFF_HEADERS, diffs)
    )


def methods_summary(out: dict) -> str:
    """Every video method and lr variant of `OTHERS` after 625 pre-training steps
    (SIDE_BY_SIDE: each start's pre-training seeds of PSEEDS) vs random init, both label
    families, 100 fine-tuning steps: top-1 by start and fine-tuning seed, then per method the
    mean from each pre-training seed and its lead over random init paired by fine-tuning seed
    (the pre-training seeds pooled)."""
    tables, cells = [], {}
    for family in ("direction", "class"):
        top1 = seed_top1(out, family, SIDE_BY_SIDE)
        if not top1:
            continue
        tables.append(f"\n\n{family} labels:\n\n" + seed_table(top1))
        for method in ("mae_st", *OTHERS, "random init"):
            starts = ["random init"] if method == "random init" else [
                f"{method}_625{p}" for p in PSEEDS if f"{method}_625{p}" in top1]  # fmt: skip
            means = [f"{sum(top1[x].values()) / len(top1[x]):.3f}" for x in starts if x in top1]
            if not means:  # a variant not fine-tuned on this family (yet)
                continue
            lead = (
                ""
                if method == "random init"
                else paired(top1, starts, ["random init"] * len(starts))
            )
            cells.setdefault(method, {})[family] = (" / ".join(means), lead)
    if not cells:
        return ""
    rows = [[f"`{m}`", *(x for f in ("direction", "class") for x in v.get(f, ("", "")))]
            for m, v in cells.items()]  # fmt: skip
    headers = ["method", "direction mean by pre-training seed", "minus random init",
               "class mean by pre-training seed", "minus random init"]  # fmt: skip
    return (
        "\n\n## Every video method after 625 pre-training steps vs random init: top-1 after "
        "100 fine-tuning steps" + "".join(tables) + "\n\nMeans, and leads over random init "
        "paired by fine-tuning seed (the pre-training seeds pooled):\n\n" + md_table(headers, rows)
    )


def maskfeat_summary(out: dict) -> str:
    """Video MaskFeat from its own init (SlowFast's, no pre-training) and after 2,500
    pre-training steps (`MASKFEAT_LONG`), beside its 625-step runs at blr 1e-3 and 4e-3 and
    from the video ViT's own init: top-1 after 100 fine-tuning steps by start and
    fine-tuning seed, then each start's lead over random init and over its own init, paired
    by pre-training and fine-tuning seed."""
    # row label -> run stem, and its own init: SlowFast's (`_0`), or random init itself for
    # the run started from the video ViT's own init
    stems = {"0": ("0", None), "625": ("625", "0"), "2500": ("2500", "0"),
             "625, blr 4e-3": ("blr4e-3_625", "0"),
             "625, blr 4e-3, the ViT's own init": ("blr4e-3_binit_625", "random init")}  # fmt: skip

    def runs(stem: str) -> list[str]:  # pre-training seeds 0 and 1
        if stem == "random init":
            return [stem] * 2
        return [f"maskfeat_video_{stem}{p}" for p in ("", "_pseed1")]

    starts = [x for stem, _ in stems.values() for x in runs(stem)]
    tables, rows = [], []
    for family in ("direction", "class"):
        top1 = seed_top1(out, family, starts)
        if not any(x in top1 for x in MASKFEAT_LONG):
            continue
        tables.append(f"\n\n{family} labels:\n\n" + seed_table(top1))
        for label, (stem, own) in stems.items():
            a = runs(stem)
            rows.append([family, label, paired(top1, a, runs("random init")),
                         paired(top1, a, runs(own)) if own else "",
                         paired(top1, a, runs("625")) if "4e-3" in stem else ""])  # fmt: skip
    if not rows:
        return ""
    headers = ["labels", "pre-training steps", "minus random init", "minus its own init",
               "minus 625 steps at blr 1e-3"]  # fmt: skip
    return (
        "\n\n## Video MaskFeat from its own init, after 625 and after 2,500 pre-training "
        "steps (blr 1e-3 unless named): top-1 after 100 fine-tuning steps"
        + "".join(tables)
        + "\n\nLeads paired by "
        "pre-training seed (its own init: the same seed) and fine-tuning seed:\n\n"
        + md_table(headers, rows)
    )


def mvit_summary(out: dict) -> str:
    """Video MaskFeat on the MViTv2 (`MVIT_STARTS`) beside the MViTv2 at random init, both label
    families, 100 fine-tuning steps: top-1 by start and fine-tuning seed, then per
    pre-training length and blr the mean from each pre-training seed and the lead over random
    init paired by fine-tuning seed (the pre-training seeds pooled); the video ViT's random
    init beside it for scale."""
    tables, rows = [], []
    for family in ("direction", "class"):
        top1 = seed_top1(out, family, MVIT_RUNS, random="random_init_mvit")
        if not any(x in top1 for x in MVIT_RUNS):
            continue
        tables.append(f"\n\n{family} labels:\n\n" + seed_table(top1))
        vit = seed_top1(out, family, []).get("random init", {})
        rnd, vit = ("" if not v else f"{sum(v.values()) / len(v):.3f}"
                    for v in (top1.get("random init", {}), vit))  # fmt: skip
        for (steps, lr), runs in MVIT_STARTS.items():
            runs = [x for x in runs if x in top1]
            if runs:
                means = " / ".join(f"{sum(top1[x].values()) / len(top1[x]):.3f}" for x in runs)
                lead = paired(top1, runs, ["random init"] * len(runs))
                rows.append([family, f"{int(steps):,}", lr, means, lead, rnd, vit])
    if not rows:
        return ""
    headers = ["labels", "pre-training steps", "blr", "MaskFeat on the MViTv2, mean by pre-training seed",
               "minus MViTv2 random init", "MViTv2 random init", "video ViT random init"]  # fmt: skip
    return (
        "\n\n## Video MaskFeat on the MViTv2 vs the MViTv2 at random init: top-1 after 100 "
        "fine-tuning steps"
        + "".join(tables)
        + "\n\nMeans, and the lead over the MViTv2's random init paired by fine-tuning seed "
        "(the pre-training seeds pooled):\n\n" + md_table(headers, rows)
    )


def rho_summary(out: dict) -> str:
    """The ρ study's claim for ρMoCo (recipe lr, blr 1e-3) after 625 pre-training steps: ρ = 2
    (`rho_moco_blr1e-3_625*`) minus ρ = 1 (`rho_moco_rho1_blr1e-3_625*`: two augmentations of
    one clip, the same number of clips seen), paired by pre-training and fine-tuning seed, on
    both label families; and each pre-training's frozen video k-NN."""
    rho2 = [f"rho_moco_blr1e-3_625{p}" for p in PSEEDS]
    rho1 = [f"rho_moco_rho1_blr1e-3_625{p}" for p in PSEEDS]
    rows = []
    for family in ("direction", "class"):
        top1 = seed_top1(out, family, [*rho2, *rho1])
        if any(x in top1 for x in rho1):
            rows.append([f"fine-tuned {family} top-1", paired(top1, rho2, rho1)])
    pre = out.get("pretrained", {})
    if not rows or not all(x in pre for x in rho2 + rho1):
        return ""
    for key, label in (("knn_direction_top1", "direction"), ("knn_top1", "class")):
        d = [pre[a][key] - pre[b][key] for a, b in zip(rho2, rho1, strict=True)]
        rows.append([f"frozen k-NN {label}, by pre-training seed",
                     " / ".join(f"{x:+.3f}" for x in d) + f" (mean {sum(d) / len(d):+.3f})"])  # fmt: skip
    return (
        "\n\n## The ρ claim for ρMoCo after 625 pre-training steps: ρ = 2 minus ρ = 1\n\n"
        "Fine-tuned rows paired by pre-training seed and fine-tuning seed; frozen k-NN from "
        "each pre-training's final evaluation (same pre-training seed):\n\n"
        + md_table(["measure", "ρ = 2 minus ρ = 1"], rows)
    )


def render(out: dict) -> str:
    headers = ["row", "pre-trained run", "init", "seed", "labels (chance)", "steps (clips)", "train loss, first / last 20 steps", "top-1", "top-5",
               "test loss", "wall", "load before", "matmul GFLOP/s"]  # fmt: skip
    rows = []
    for r in out["rows"]:
        m = r["metrics"]
        labels = r.get("labels", "class")
        chance = "0.125" if labels == "direction" else "0.100"
        rows.append([f"`{r['name']}`", r.get("source", "mae_st_60"), r["init"], r.get("seed", 0),
                     f"{labels} ({chance})",
                     f"{m['finetune_steps']} ({m['train_images_seen']:,})",
                     f"{r['first_loss']:.3f} / {m['finetune_train_loss']:.3f}",
                     f"{m['finetune_top1']:.3f}", f"{m['finetune_top5']:.3f}",
                     f"{m['finetune_test_loss']:.3f}", f"{r['wall_s'] / 60:.1f} min",
                     r["uptime_before"].rsplit("load average:", 1)[-1].split(",")[0].strip(),
                     r["matmul_gflops_before"]])  # fmt: skip
    return (
        "# Video fine-tuning: pre-trained vs random init (Moving Fashion-MNIST, CPU)\n\n"
        + "; ".join(f"`{c}`" for c in out["commands"])
        + "\n\nEvery row: `visrep eval finetune --ckpt RUN method.init=INIT "
        f"{' '.join(f'{k}={v}' for k, v in PROTOCOL.items())}` (+ `run.seed=N` for the seed-N "
        "rows, `--labels direction` (method.labels=direction) for the direction rows, "
        "`optim.epochs=1 optim.warmup_epochs=0.1` for the `_1ep` rows, `optim.epochs=3 "
        "optim.warmup_epochs=0.3` for the `_3ep` rows); 400 test videos, 2 temporal "
        "views x 1 centre crop, softmax averaged; one standard error of a top-1 near 0.5 on "
        "400 videos is about 0.025.\n\n"
        + md_table(headers, rows)
        + "\n\nPre-trained runs: `mae_st_60` = runs/video_methods/mae_st "
        "(benchmarks/video_methods.py, 60 steps of 32); `mae_st_p8_90` / `mae_st_p8_75` = "
        "runs/video_mask_ratio_p8/mae_st and mae_st_mask75 (benchmarks/video_methods.py --only "
        "mae_st mae_st_mask75 --set backbone.patch_size=8 backbone.depth=12 optim.epochs=4: "
        "ViT-Tiny/8, 12 blocks, 256 tokens, 240 steps of 32 at 90 % / 75 % masking; "
        "benchmarks/results/video_mask_ratio_p8.md); `mae_st_p8_90_pseed1` / "
        "`mae_st_p8_75_pseed1` = the same with `run.seed=1` added to --set and --runs-dir "
        "runs/video_mask_ratio_p8_pseed1 (benchmarks/results/video_mask_ratio_p8_pseed1.md)"
        + "".join(
            f"; `{k}` = `{v['command']}` ({v['train_steps']} steps; video k-NN class "
            f"{v['knn_top1']:.3f} vs {v['init_knn_top1']:.3f} untrained, direction "
            f"{v['knn_direction_top1']:.3f} vs {v['init_knn_direction_top1']:.3f})"
            for k, v in out.get("pretrained", {}).items()
        )  # fmt: skip
        + ratio_summary(out)
        + methods_summary(out)
        + maskfeat_summary(out)
        + mvit_summary(out)
        + rho_summary(out)
        + "\n\nHost shared (2 cores, other 1-thread jobs running): load and matmul probe per row.\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="*", default=["*"], help="row names or patterns (fnmatch)")
    p.add_argument("--rerun", action="store_true", help="run rows already in the JSON again")
    p.add_argument("--jobs", type=int, default=1, help="rows fine-tuned at once (processes)")
    args = p.parse_args()
    for pattern in args.rows:
        if not fnmatch.filter(ROWS, pattern):
            raise SystemExit(f"no row matches {pattern!r}; rows: {' '.join(ROWS)}")
    args.rows = [n for n in ROWS if any(fnmatch.fnmatchcase(n, x) for x in args.rows)]
    path = RESULTS / "video_finetune.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    results = {r["name"]: r for r in earlier.get("rows", [])}  # name -> row, new ones added

    def ordered() -> list[dict]:  # every row, in ROWS order (rows no longer in ROWS kept last)
        return [results[n] for n in ROWS if n in results] + [
            r for n, r in results.items() if n not in ROWS]  # fmt: skip

    out = {"command": command_line(), "environment": environment(), "protocol": PROTOCOL,
           "sources": {k: str(v) for k, v in SOURCES.items()},
           "commands": list(dict.fromkeys([*earlier.get("commands", []), command_line()])),
           "pretrained": earlier.get("pretrained", {}), "rows": ordered()}  # fmt: skip
    todo = [n for n in ROWS if n in args.rows and (n not in results or args.rerun)]
    for name in todo:
        source = SOURCES[ROWS[name][0]]
        if ROWS[name][0] not in MADE_HERE and not (source / "checkpoint.pt").is_file():
            raise SystemExit(f"{source} holds no run: train it first with "
                             "benchmarks/video_methods.py (see SOURCES)")  # fmt: skip
    made = dict.fromkeys(ROWS[n][0] for n in todo if ROWS[n][0] in MADE_HERE)
    need = [n for n in made if n not in out["pretrained"] or not (SOURCES[n] / "metrics.json").is_file()]  # fmt: skip
    for info in as_finished(pretrain, [(n,) for n in need], args.jobs):
        out["pretrained"][info["name"]] = info
        write_json(out, path)
    for row in as_finished(run_row, [(n,) for n in todo], args.jobs):
        results[row["name"]] = row
        out["rows"] = ordered()  # every row so far: a stopped run loses none
        write_json(out, path)
        (RESULTS / "video_finetune.md").write_text(render(out))
    write_json(out, path)
    (RESULTS / "video_finetune.md").write_text(render(out))


if __name__ == "__main__":
    main()
