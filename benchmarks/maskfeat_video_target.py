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
(`method.encoder_init=backbone`), and on the MViTv2 of `maskfeat_video_mvit_mfmnist` (its
own 4 × 8 × 8 output tokens and 4 px HOG cells) `maskfeat_video_mvit_blr4e-3_625{,_pseed1,
_pseed2}`, `maskfeat_video_mvit_blr1e-3_625` and `maskfeat_video_mvit_blr4e-3_2500`
(`MVIT_RUNS`): trained by that script, read here) and two 125-step screens this script trains when
missing, at blr 1e-3 and 1e-2.

With `--context [NAME ...]` it also asks whether the encoder can read a masked token from
its neighbours at all (`context_check`, the checks of `CHECKS`; none named: `context`): the
625-step runs' encoder and optimiser settings, trained here on 2,048 fixed train clips with
i.i.d. random token masks at 15 % (not cubes: a masked token keeps visible neighbours in
space and time). `context`: the HOG loss on every token, 300 steps. `context_pixels`: a pixel
target instead (each token's normalised pixels of the frames its HOG reads, 3 × 16 × 16
values, through a fresh linear head). `context_static`: the pixel target on the masked
tokens only, on clips made static (the first frame repeated), so that a masked token's
pixels are exactly those of the same place at every other time: a copy task, 1,500 steps.
`context_noise`: the same on static smooth noise, where every token has content.
`context_static_lr1e-2`: `context_static` at ten times the lr, 300 steps;
`context_static_depth2`: with 2 blocks instead of 6; `context_static_sincos`: with fixed
sin-cos position tables (rms about 1, against the learned tables' 0.02 at init: space image
MAE's 2-D table, time a 1-D one) instead of learned ones. `control_position_attention`
(lr 1e-2) and `_lr1e-3`: the copy task for `PositionAttention`, an attention layer that
selects by position alone, which shows the task, clips, masks and scoring let a model learn
the copy (no encoder, no HOG). `context_static_hog`: the copy task on the HOG target (a
static clip's HOG is the same at every time); `context_static_hog_mvit`: the same for the
MViTv2 of `maskfeat_video_mvit_mfmnist` (its own geometry: 4 × 8 × 8 output tokens, 4 px
HOG cells), video MaskFeat's official backbone family, whose attention has relative
position biases. `context_hog_masked` and `_mvit`: the same two on moving clips, the HOG
loss on the masked tokens only (video MaskFeat's loss, i.i.d. masks). Beside each, what
copying the true target from the same place one temporal token away would score
(`neighbour_oracles`). A check not named keeps its earlier record in the JSON.

A run whose folder is gone (runs/ is not kept) keeps its earlier record in the JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/maskfeat_video_target.py [--context [NAME ...]]

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

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402
from video_finetune import (  # noqa: E402
    MADE_HERE,
    MVIT,
    MVIT_RUNS,
    OTHERS,
    PRETRAIN,
    SOURCES,
    pretrain_args,
)

from visrep.config import apply_overrides  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.data.video_eval import preview_clips, video_eval_sets  # noqa: E402
from visrep.logger import read_log  # noqa: E402
from visrep.methods.maskfeat import masked_mse  # noqa: E402
from visrep.parts.pos_embed import sincos_1d, sincos_2d  # noqa: E402
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
                                "maskfeat_video_blr4e-3_binit_625_pseed1",
                                *MVIT_RUNS)} | SCREENS  # fmt: skip


def screen(name: str, out: Path, recorded: bool = False) -> str:
    """Train the screen `name` when it has not finished and has no earlier record; its command."""
    lr = name.rsplit("blr", 1)[1]
    args = ["train", *SCREEN, f"optim.blr={lr}", f"run.out_dir={out}"]
    if not recorded and not (out / "metrics.json").is_file():  # not finished: train it afresh
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


# the context checks (module docstring): steps, i.i.d. mask ratio, AdamW lr (linear warmup),
# batch, fixed train clips, scoring interval; each check's own settings on top
CONTEXT = {"steps": 300, "mask_ratio": 0.15, "lr": 1e-3, "warmup_steps": 20, "batch": 32,
           "train_clips": 2048, "every": 50}  # fmt: skip
# name -> (target, loss on "all" tokens or "masked" only, clips, settings): "moving" are the
# set's clips; "static" repeat each clip's first frame (a masked token's pixels are those of
# the same place at every other time); "noise" are static bilinear-upsampled 8 × 8 Gaussian
# noise (every token carries content)
CHECKS = {
    "context": ("hog", "all", "moving", {}),
    "context_pixels": ("pixels", "all", "moving", {}),
    "context_static": ("pixels", "masked", "static", {"steps": 1500, "every": 250}),
    "context_noise": ("pixels", "masked", "noise", {"every": 100}),
    "context_static_lr1e-2": ("pixels", "masked", "static", {"lr": 1e-2, "every": 100}),
    "context_static_depth2": ("pixels", "masked", "static", {"depth": 2, "every": 100}),
    "context_static_sincos": ("pixels", "masked", "static", {"pos": "sincos", "every": 100}),
    # the copy task on the HOG target (a static clip's HOG is the same at every time), on the
    # ViT and on the recipe's MViTv2 (relative position biases in every attention)
    "context_static_hog": ("hog", "masked", "static", {"every": 100}),
    "context_static_hog_mvit": ("hog", "masked", "static", {"every": 100, "recipe": MVIT}),
    # video MaskFeat's own task with i.i.d. masks: HOG of masked tokens of moving clips
    "context_hog_masked": ("hog", "masked", "moving", {"every": 100}),
    "context_hog_masked_mvit": ("hog", "masked", "moving", {"every": 100, "recipe": MVIT}),
    # the control: `PositionAttention` instead of the encoder, on the same copy task
    "control_position_attention": (
        "pixels",
        "masked",
        "static",
        {"model": "position", "lr": 1e-2, "every": 100},
    ),
    "control_position_attention_lr1e-3": (
        "pixels",
        "masked",
        "static",
        {"model": "position", "every": 100},
    ),
}


class PositionAttention(torch.nn.Module):
    """The copy checks' control: one attention layer whose weights are a learned table of
    logits by (query position, key position), no queries or keys from content. Values: each
    visible token's target through a linear map, a masked token a learned vector; a token
    attends to the visible tokens other than itself; a linear map back to the target. It
    can copy a static clip's token from the same place at another time exactly, and it must
    learn where to look by position alone: what the encoder has to learn through q·k."""

    def __init__(self, tokens: int, dim: int, width: int = 192) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Linear(dim, width), torch.nn.Linear(width, dim)
        self.mask_token = torch.nn.Parameter(torch.zeros(width))
        self.logits = torch.nn.Parameter(torch.zeros(tokens, tokens))  # uniform at the start

    def forward(self, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[N, L, K] targets, [N, L] mask (1 = masked) -> [N, L, K] predictions."""
        masked = mask.bool()
        x = torch.where(
            masked[..., None], self.mask_token.expand(*mask.shape, -1), self.embed(target)
        )
        eye = torch.eye(len(self.logits), dtype=torch.bool, device=target.device)
        logits = self.logits.masked_fill(eye, -1e4)[None].masked_fill(masked[:, None], -1e4)
        return self.out(torch.softmax(logits, dim=-1) @ x)


def pixel_target(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Each token's normalised pixels of the frames its HOG target reads (0, u, 2u, …):
    [N, C, T, H, W] -> [N, L, C·p·p] in (t, h, w) order, channel-major within a token."""
    p = model.backbone.patch_size
    frames = video[:, :, :: model.backbone.t_patch_size]  # [N, C, T', H, W]
    n, c, t, h, w = frames.shape
    x = frames.reshape(n, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
    return x.reshape(n, t * (h // p) * (w // p), c * p * p)


def neighbour_oracles(target: torch.Tensor, grid: tuple) -> dict[str, float]:
    """MSE over the position-mean predictor's, on the tokens with a temporal neighbour on both
    sides, of predicting a token's target by the true target at the same place one temporal
    token earlier ("previous") and by the mean of those one earlier and one later ("mean of
    previous and next"): what the context holds for a predictor that only copies."""
    x = target.reshape(target.shape[0], grid[0], -1, target.shape[-1])
    mid, before, after = x[:, 1:-1], x[:, :-2], x[:, 2:]
    base = (mid - x.mean(0, keepdim=True)[:, 1:-1]).pow(2).mean()
    return {"previous": ((mid - before).pow(2).mean() / base).item(),
            "mean of previous and next": ((mid - (before + after) / 2).pow(2).mean() / base).item()}  # fmt: skip


def context_clips(kind: str, clips: torch.Tensor, seed: int) -> torch.Tensor:
    """The clips of a check (`CHECKS`): as they are, static, or static smooth noise."""
    if kind == "moving":
        return clips
    if kind == "noise":
        n, c, t, h, w = clips.shape
        z = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        frame = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
        return frame[:, None].expand(n, c, t, h, w).contiguous()
    return clips[:, :, :1].expand_as(clips).contiguous()


def context_check(name: str) -> dict:
    """Masked- and visible-token MSE over the position-mean predictor's while the 625-step
    runs' encoder (`video_finetune.OTHERS["maskfeat_video"]`, SlowFast init, torch seed 0;
    or the MViTv2 recipe's, or the `PositionAttention` control, as `CHECKS[name]` says)
    learns a target under i.i.d. token masks (`CHECKS[name]` on `CONTEXT`): its HOG, or
    `pixel_target` through a fresh head; the loss on every token or on the masked ones; and
    `neighbour_oracles` on the scored clips."""
    kind, loss_on, clip_kind, own = CHECKS[name]
    c = CONTEXT | own
    recipe = c.get("recipe", OTHERS["maskfeat_video"][0])
    overrides = [] if recipe == MVIT else [*PRETRAIN, *OTHERS["maskfeat_video"][1]]
    if "depth" in c:
        overrides.append(f"backbone.depth={c['depth']}")
    cfg = apply_overrides(get_recipe(recipe), overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    if c.get("pos") == "sincos":  # fixed sin-cos tables: space as image MAE's, time 1-D
        bb = model.backbone
        t, h, w = bb.grid
        with torch.no_grad():
            bb.pos_embed_spatial.copy_(sincos_2d(bb.embed_dim, (h, w))[None])
            bb.pos_embed_temporal.copy_(
                torch.from_numpy(sincos_1d(bb.embed_dim, np.arange(t)))[None]
            )
        bb.pos_embed_spatial.requires_grad_(False)
        bb.pos_embed_temporal.requires_grad_(False)
    if kind == "pixels":  # after the model's own draws: the HOG check's init is unchanged
        model.target = lambda v: pixel_target(model, v)
        width = model.backbone.in_chans * model.backbone.patch_size**2
        model.head = torch.nn.Linear(model.head.in_features, width)
        torch.nn.init.trunc_normal_(model.head.weight, std=0.02)
        torch.nn.init.zeros_(model.head.bias)
    fmnist = dataclasses.replace(cfg.eval, dataset="fashion_mnist")
    train = video_eval_sets(cfg.data, dataclasses.replace(fmnist, limit_train=c["train_clips"]),
                            views=1, crops=1)[0]  # fmt: skip
    clips = context_clips(clip_kind, torch.stack([train.views(i)[0] for i in range(len(train))]), 1)
    test = context_clips(clip_kind, preview_clips(cfg.data, fmnist, CLIPS), 2)
    target = model.target(test)
    position_mean = target.mean(0, keepdim=True).expand_as(target)
    gen = torch.Generator().manual_seed(0)

    def draw(n: int) -> torch.Tensor:  # [n, L] i.i.d. token masks
        return (torch.rand(n, target.shape[1], generator=gen) < c["mask_ratio"]).float()

    test_mask = draw(len(test))
    if c.get("model") == "position":  # the control replaces the encoder
        net = PositionAttention(target.shape[1], target.shape[2])

        def predict(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return net(model.target(video), mask)

        trained = list(net.parameters())
    else:

        def predict(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return model({"images": video}, mask=mask)["pred"].float()

        trained = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trained, lr=c["lr"], betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)  # fmt: skip
    curve = []
    for step in range(c["steps"] + 1):
        if step % c["every"] == 0:
            with torch.no_grad():
                pred = predict(test, test_mask)
            curve.append({"step": step} | {
                k: masked_mse(pred, target, m).item() / masked_mse(position_mean, target, m).item()
                for k, m in (("masked", test_mask), ("visible", 1 - test_mask))})  # fmt: skip
            print(name, curve[-1], flush=True)
        if step == c["steps"]:
            break
        video = clips[torch.randint(0, len(clips), (c["batch"],), generator=gen)]
        mask = draw(c["batch"])
        pred, truth = predict(video, mask), model.target(video)
        loss = F.mse_loss(pred, truth) if loss_on == "all" else masked_mse(pred, truth, mask)
        for group in opt.param_groups:
            group["lr"] = c["lr"] * min(1.0, (step + 1) / c["warmup_steps"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, cfg.optim.clip_grad)
        opt.step()
    return {"settings": c, "target": kind, "loss_on": loss_on, "clips": clip_kind,
            "overrides": overrides, "curve": curve,
            "oracles": neighbour_oracles(target, model.out_grid)}  # fmt: skip


@torch.no_grad()
def token_scales() -> dict[str, float]:
    """At the 625-step runs' init (SlowFast's, torch seed 0), on the scored clips: the rms of
    the patch embeddings, and of the learned position table added to them."""
    cfg = apply_overrides(get_recipe(OTHERS["maskfeat_video"][0]),
                          [*PRETRAIN, *OTHERS["maskfeat_video"][1]])  # fmt: skip
    torch.manual_seed(0)
    bb = build_model(cfg).backbone
    clips = preview_clips(cfg.data, dataclasses.replace(cfg.eval, dataset="fashion_mnist"), CLIPS)
    return {"patch_embedding_rms": bb.patch_embed(clips).pow(2).mean().sqrt().item(),
            "position_rms": bb.pos_table().pow(2).mean().sqrt().item()}  # fmt: skip


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
    for key in CHECKS:
        if key not in out:
            continue
        r = out[key]
        c, kind = r["settings"], r.get("target", "hog")
        what = {"hog": "HOG", "pixels": "pixel"}[kind]
        clips = {"moving": "train clips", "static": "train clips made static (each clip's "
                 "first frame at every time)", "noise": "static smooth-noise clips"}  # fmt: skip
        loss = "every token" if r.get("loss_on", "all") == "all" else "the masked tokens only"
        kind_of_clips = r.get("clips", "moving")
        same = "" if kind_of_clips == "moving" else " (made the same way)"
        encoder = "".join([f" with {c['depth']} blocks" if "depth" in c else "",
                           " with fixed sin-cos position tables" if c.get("pos") else ""])  # fmt: skip
        who = ("The control (`PositionAttention`: one attention layer of learned position "
               "logits) instead of the encoder" if c.get("model") else
               f"`{MVIT}`'s MViTv2 (SlowFast init, its HOG on 4 px cells)"
               if c.get("recipe") == MVIT else f"The 625-step runs' encoder{encoder}")  # fmt: skip
        context += [
            f"## `{key}`: can it read a masked token's {what} target from its neighbours?", "",
            f"{who}, {c['steps']:,} steps of {c['batch']} from "
            f"{c['train_clips']:,} fixed {clips[kind_of_clips]}, i.i.d. token masks at "
            f"{c['mask_ratio']:.0%}, {what} loss on {loss} (AdamW lr {c['lr']:g}); MSE over the "
            f"position-mean predictor's on the scored clips{same}:", "",
            md_table(["step", "masked tokens", "visible tokens"],
                     [[x["step"], f"{x['masked']:.3f}", f"{x['visible']:.3f}"]
                      for x in r["curve"]]), ""]  # fmt: skip
        if "command" in r:
            context += [f"Command: `{r['command']}`", ""]
        if "oracles" in r:
            context += ["Copying the true target from the same place at other times, on "
                        "tokens with a neighbour on both sides: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in r["oracles"].items())
                        + " of the position-mean MSE.", ""]  # fmt: skip
    return "\n".join([
        "# Video MaskFeat: masked HOG loss vs predictors that ignore the clip", "",
        f"Last command: `{out['command']}`; the rows scored by "
        + ", ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "") for r in out["runs"].values()))
        + " (a run whose folder is gone keeps its row).", "",
        f"{CLIPS} Moving Fashion-MNIST test videos, one clip each (`preview_clips`), the run's own "
        "cube masks (torch seed 0); masked-token MSE (`maskfeat.masked_mse`). Means fitted "
        "on these clips. Commands of the runs: the json (`commands`).", "",
        md_table(heads, rows), "", *context,
        *([f"At the encoder's init on the scored clips the patch embeddings have rms "
           f"{out['scales']['patch_embedding_rms']:.3f}, the learned position table added to "
           f"them {out['scales']['position_rms']:.3f}.", ""] if "scales" in out else []),
        f"torch {env['torch']}, {env['threads']} thread; scores, not timings (load: "
        f"`{out['uptime']}`; matmul probe {out['matmul_gflops']} GFLOP/s).", ""])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", nargs="*", default=None, choices=list(CHECKS),
                   help="run these context checks (none named: `context`); the others keep "
                   "their earlier record")  # fmt: skip
    args = p.parse_args()
    path = OUT.with_suffix(".json")
    earlier = json.loads(path.read_text()) if path.exists() else {}
    torch.set_num_threads(1)
    recorded = earlier.get("runs", {})
    commands = {n: screen(n, p, n in recorded) for n, p in SCREENS.items()}
    for name in RUNS:
        if name in MADE_HERE:
            commands[name] = "visrep " + " ".join(pretrain_args(name))

    def done(run: Path) -> bool:  # finished (a run still training has a checkpoint, no metrics)
        return (run / "metrics.json").is_file()

    runs = {n: score(p) | {"command": command_line()} if done(p) else recorded[n]
            for n, p in RUNS.items() if done(p) or n in recorded}  # fmt: skip
    out = {"command": command_line(), "environment": environment(), "uptime": uptime(),
           "matmul_gflops": round(matmul_gflops(), 1), "commands": commands, "runs": runs}  # fmt: skip
    out["scales"] = token_scales()
    todo = [] if args.context is None else args.context or ["context"]
    for key in CHECKS:
        if key in todo or key in earlier:
            out[key] = (
                context_check(key) | {"command": command_line()} if key in todo else earlier[key]
            )
    write_json(out, OUT.with_suffix(".json"))
    OUT.with_suffix(".md").write_text(render(out))
    print(render(out))


if __name__ == "__main__":
    main()
