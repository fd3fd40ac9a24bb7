"""What video MaskFeat's pre-training learns on Moving Fashion-MNIST: its masked HOG loss
against predictors that know nothing of the clip.

Video MaskFeat (Wei et al., "Masked Feature Prediction for Self-Supervised Visual
Pre-Training", CVPR 2022, Sec. 4; facebookresearch/SlowFast `slowfast/models/masked.py`)
regresses the HOG of masked space-time cubes. Its encoders trail random init on the
direction labels (docs/results.md, "Every video method by fine-tuning after 625 pre-training
steps"). This script asks whether the pre-training got past the trivial solution: on the
same clips and the same cube masks it scores (masked-token MSE, `maskfeat.masked_mse`)

- the run's own prediction (`MaskFeatVideo.forward`);
- zero (the HOG of a blank frame);
- the mean target over these clips and tokens (one vector for every token);
- the mean target per token position (the best predictor that ignores the clip);
- a presence oracle: the mean of the non-zero targets where the true target is non-zero
  (the object covers the token's cells in that frame), zero elsewhere: a predictor told only
  where the object is, not its shape.

The means are fitted on the scored clips themselves, which favours the baselines slightly.
Clips: 256 Moving Fashion-MNIST test videos spread over the run's test split, one clip each
(`visrep.data.video_eval.preview_clips`: the first eval view); masks from the run's own
sampler, torch seed 0.

Runs: `benchmarks/video_finetune.py`'s video MaskFeat pre-trainings (`maskfeat_video_0`,
its init saved after one step at lr 0; `_625`, `_625_pseed1`, `_2500`, `_2500_pseed1`, and
`maskfeat_video_blr4e-3_625{,_pseed1}` at four times the lr, the recipe's since, and
`maskfeat_video_blr4e-3_binit_625{,_pseed1}` from the video ViT's own init
(`method.encoder_init=backbone`): trained by that script, read here) and two 125-step
screens this script trains when missing, at blr 1e-3 and 1e-2.

With `--context` it also asks whether the encoder can read a masked token's HOG from its
neighbours at all (`context_check`): the 625-step runs' encoder and optimiser settings,
trained here for 300 steps on 2,048 fixed train clips with i.i.d. random token masks at 15 %
(not cubes: a masked token keeps visible neighbours in space and time) and the HOG loss on
every token; its MSE over the position-mean predictor's on the scored clips, masked and
visible tokens apart (without the flag the JSON's earlier check is kept).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/maskfeat_video_target.py [--context]

Writes benchmarks/results/maskfeat_video_target.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402
from video_finetune import MADE_HERE, OTHERS, PRETRAIN, SOURCES  # noqa: E402

from visrep.config import apply_overrides  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.data.video_eval import preview_clips, video_eval_sets  # noqa: E402
from visrep.logger import read_log  # noqa: E402
from visrep.methods.maskfeat import masked_mse  # noqa: E402
from visrep.runs import build_model, load_run  # noqa: E402

OUT = HERE / "results" / "maskfeat_video_target"
CLIPS = 256
# 125-step screens (1 epoch of the 4,000 videos, no eval): blr 1e-3 (the recipe then) and ten times it
SCREEN = ["maskfeat_video_mfmnist", *PRETRAIN, *OTHERS["maskfeat_video"][1],
          "optim.epochs=1", "optim.warmup_epochs=0.2", "eval.dataset="]  # fmt: skip
SCREENS = {
    f"screen_125_blr{lr}": Path(f"runs/maskfeat_video_target/blr{lr}") for lr in ("1e-3", "1e-2")
}
RUNS = {n: SOURCES[n] for n in ("maskfeat_video_0", "maskfeat_video_625",
                                "maskfeat_video_625_pseed1", "maskfeat_video_2500",
                                "maskfeat_video_2500_pseed1", "maskfeat_video_blr4e-3_625",
                                "maskfeat_video_blr4e-3_625_pseed1",
                                "maskfeat_video_blr4e-3_binit_625",
                                "maskfeat_video_blr4e-3_binit_625_pseed1")} | SCREENS  # fmt: skip


def screen(name: str, out: Path) -> str:
    """Train the screen `name` when it has not finished; its command."""
    lr = name.rsplit("blr", 1)[1]
    args = ["train", *SCREEN, f"optim.blr={lr}", f"run.out_dir={out}"]
    if not (out / "metrics.json").is_file():  # not finished: train it afresh
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "visrep.cli", *args], check=True)
    return "visrep " + " ".join(args)


@torch.no_grad()
def score(run: Path) -> dict:
    """Masked-token MSE of the run and of the baselines on the same clips and masks."""
    cfg, model = load_run(run)
    clips = preview_clips(cfg.data, dataclasses.replace(cfg.eval, dataset="fashion_mnist"), CLIPS)
    torch.manual_seed(0)
    out = model({"images": clips})
    mask, target = out["mask"], model.target(clips)  # [N, L], [N, L, K]
    present = target.abs().sum(-1, keepdim=True) > 0  # the object's cells in this frame
    preds = {"model": out["pred"].float(),
             "zero": torch.zeros_like(target),
             "mean": target.mean((0, 1), keepdim=True).expand_as(target),
             "position mean": target.mean(0, keepdim=True).expand_as(target),
             "presence oracle": torch.where(present, target[present[..., 0]].mean(0),
                                            torch.zeros_like(target))}  # fmt: skip
    log = read_log(run)
    curve = [(r["step"], r["train/loss"]) for r in log if "train/loss" in r]
    return {"run": str(run), "steps": curve[-1][0], "train_loss_curve": curve,
            "lr": cfg.optim.blr, "seed": cfg.run.seed, "masked_frac": mask.mean().item(),
            "mse": {k: masked_mse(p, target, mask).item() for k, p in preds.items()}}  # fmt: skip


# the context check (module docstring): steps, i.i.d. mask ratio, AdamW lr (linear warmup),
# batch, fixed train clips, scoring interval
CONTEXT = {"steps": 300, "mask_ratio": 0.15, "lr": 1e-3, "warmup_steps": 20, "batch": 32,
           "train_clips": 2048, "every": 50}  # fmt: skip


def context_check() -> dict:
    """Masked- and visible-token MSE over the position-mean predictor's while the 625-step
    runs' encoder (`video_finetune.OTHERS["maskfeat_video"]`, SlowFast init, torch seed 0)
    learns the HOG of every token under i.i.d. token masks (`CONTEXT`)."""
    c = CONTEXT
    overrides = [*PRETRAIN, *OTHERS["maskfeat_video"][1]]
    cfg = apply_overrides(get_recipe(OTHERS["maskfeat_video"][0]), overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    fmnist = dataclasses.replace(cfg.eval, dataset="fashion_mnist")
    train = video_eval_sets(cfg.data, dataclasses.replace(fmnist, limit_train=c["train_clips"]),
                            views=1, crops=1)[0]  # fmt: skip
    clips = torch.stack([train.views(i)[0] for i in range(len(train))])
    test = preview_clips(cfg.data, fmnist, CLIPS)
    target = model.target(test)
    position_mean = target.mean(0, keepdim=True).expand_as(target)
    gen = torch.Generator().manual_seed(0)

    def draw(n: int) -> torch.Tensor:  # [n, L] i.i.d. token masks
        return (torch.rand(n, target.shape[1], generator=gen) < c["mask_ratio"]).float()

    test_mask = draw(len(test))
    opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)  # fmt: skip
    curve = []
    for step in range(c["steps"] + 1):
        if step % c["every"] == 0:
            with torch.no_grad():
                pred = model({"images": test}, mask=test_mask)["pred"].float()
            curve.append({"step": step} | {
                k: masked_mse(pred, target, m).item() / masked_mse(position_mean, target, m).item()
                for k, m in (("masked", test_mask), ("visible", 1 - test_mask))})  # fmt: skip
            print(curve[-1], flush=True)
        if step == c["steps"]:
            break
        video = clips[torch.randint(0, len(clips), (c["batch"],), generator=gen)]
        pred = model({"images": video}, mask=draw(c["batch"]))["pred"].float()
        loss = F.mse_loss(pred, model.target(video))  # every token, masked or not
        for group in opt.param_groups:
            group["lr"] = c["lr"] * min(1.0, (step + 1) / c["warmup_steps"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
        opt.step()
    return {"settings": c, "overrides": overrides, "curve": curve}


def render(out: dict) -> str:
    names = ["model", "zero", "mean", "position mean", "presence oracle"]
    rows = []
    for name, r in out["runs"].items():
        m = r["mse"]
        early = next((v for s, v in r["train_loss_curve"] if s >= 40), float("nan"))
        rows.append([name, r["steps"], f"{r['lr']:g}", r["seed"], f"{early:.4f}",
                     f"{r['train_loss_curve'][-1][1]:.4f}", *(f"{m[k]:.4f}" for k in names),
                     f"{m['model'] / m['position mean']:.3f}"])  # fmt: skip
    heads = ["run", "steps", "blr", "seed", "train loss, step 40", "train loss, last",
             *(f"{k} MSE" for k in names), "model / position mean"]  # fmt: skip
    env = out["environment"]
    context = []
    if "context" in out:
        c = out["context"]["settings"]
        context = [
            "## Can it read a masked token from its neighbours?", "",
            f"The 625-step runs' encoder, {c['steps']} steps of {c['batch']} from "
            f"{c['train_clips']:,} fixed train clips, i.i.d. token masks at "
            f"{c['mask_ratio']:.0%}, HOG loss on every token (AdamW lr {c['lr']:g}); MSE over "
            "the position-mean predictor's on the clips above:", "",
            md_table(["step", "masked tokens", "visible tokens"],
                     [[r["step"], f"{r['masked']:.3f}", f"{r['visible']:.3f}"]
                      for r in out["context"]["curve"]]), ""]  # fmt: skip
    return "\n".join([
        "# Video MaskFeat: masked HOG loss vs predictors that ignore the clip", "",
        f"Command: `{out['command']}`", "",
        f"{CLIPS} Moving Fashion-MNIST test videos, one clip each (`preview_clips`), the run's own "
        "cube masks (torch seed 0); masked-token MSE (`maskfeat.masked_mse`). Means fitted "
        "on these clips. Commands of the runs: the json (`commands`).", "",
        md_table(heads, rows), "", *context,
        f"torch {env['torch']}, {env['threads']} thread; scores, not timings (load: "
        f"`{out['uptime']}`; matmul probe {out['matmul_gflops']} GFLOP/s).", ""])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", action="store_true", help="run the context check (docstring)")
    args = p.parse_args()
    path = OUT.with_suffix(".json")
    earlier = json.loads(path.read_text()) if path.exists() else {}
    torch.set_num_threads(1)
    commands = {n: screen(n, p) for n, p in SCREENS.items()}
    for name in RUNS:
        if name in MADE_HERE:
            recipe, overrides = MADE_HERE[name]
            commands[name] = " ".join(["visrep train", recipe, *PRETRAIN, *overrides,
                                       f"run.out_dir={SOURCES[name]}"])  # fmt: skip
    runs = {n: score(p) for n, p in RUNS.items() if (p / "checkpoint.pt").is_file()}
    out = {"command": command_line(), "environment": environment(), "uptime": uptime(),
           "matmul_gflops": round(matmul_gflops(), 1), "commands": commands, "runs": runs}  # fmt: skip
    if args.context or "context" in earlier:
        out["context"] = context_check() if args.context else earlier["context"]
    write_json(out, OUT.with_suffix(".json"))
    OUT.with_suffix(".md").write_text(render(out))
    print(render(out))


if __name__ == "__main__":
    main()
