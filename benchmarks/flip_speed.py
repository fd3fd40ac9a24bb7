"""FLIP's image-tower training step with 50% (and 75%) of the patch tokens dropped vs
unmasked, timed side by side (FLIP, Li et al. 2023; the paper reports ~2× at 50%).

A step = FLIP image tower forward (`FLIP.image_features` + image projection) on the kept
tokens, CLIP loss against fixed text embeddings, backward, AdamW step on the image tower.
Every round times each masking ratio once, interleaved; times are medians over rounds and
the speed-up is the median of per-round ratios (the host is shared and noisy).

    .venv/bin/python benchmarks/flip_speed.py            # -> results/flip_speed.{md,json}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

from visrep.backbones.vit import ViT  # noqa: E402
from visrep.methods.clip import FLIP, FLIPConfig  # noqa: E402
from visrep.parts.losses import clip_loss  # noqa: E402

SETTINGS = {
    # the clip_fmnist / flip_fmnist image tower: ViT-Tiny/4, 6 blocks, 28 px gray, 49 tokens
    "vit_tiny4_28px_d6": dict(arch="vit_tiny", img=28, patch=4, chans=1, depth=6, batch=256),
    # a paper-shaped sequence: ViT-Tiny/16 at 224 px, 196 tokens
    "vit_tiny16_224px": dict(arch="vit_tiny", img=224, patch=16, chans=3, depth=0, batch=64),
    # FLIP's ViT-B/16 at 224 px (small batch on a CPU)
    "vit_base16_224px": dict(arch="vit_base", img=224, patch=16, chans=3, depth=0, batch=8),
}


def build(s: dict, ratio: float) -> tuple[FLIP, torch.optim.Optimizer]:
    torch.manual_seed(0)
    vit = ViT(s["arch"], img_size=s["img"], patch_size=s["patch"], in_chans=s["chans"],
              depth=s["depth"])  # fmt: skip
    m = FLIP(FLIPConfig(embed_dim=128, text_width=32, text_layers=1, text_heads=2,
                        mask_ratio=ratio), vit).train()  # fmt: skip
    params = list(m.backbone.parameters()) + [m.image_projection, m.logit_scale]
    return m, torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-4)


def step(m: FLIP, opt, x: torch.Tensor, text: torch.Tensor) -> float:
    t0 = time.perf_counter()
    loss = clip_loss(m.encode_image(x), text, m.logit_scale)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def run(name: str, s: dict, ratios: list[float], rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s["batch"], s["chans"], s["img"], s["img"], generator=g)
    text = torch.randn(s["batch"], 128, generator=g)
    models = {r: build(s, r) for r in ratios}
    for r in ratios:  # warm-up
        step(*models[r], x, text)
    times: dict[float, list[float]] = {r: [] for r in ratios}
    for _ in range(rounds):
        for r in ratios:
            times[r].append(step(*models[r], x, text))
    base = times[0.0]
    out = {"setting": name, **s, "rounds": rounds,
           "median_s": {str(r): statistics.median(t) for r, t in times.items()}}  # fmt: skip
    out["speedup"] = {str(r): statistics.median(b / t for b, t in zip(base, times[r]))
                      for r in ratios if r}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "flip_speed"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    before = uptime()
    results = [run(n, SETTINGS[n], [0.0, 0.5, 0.75], args.rounds)
               for n in args.settings.split(",")]  # fmt: skip
    rows = [[r["setting"], r["batch"], f"{r['median_s']['0.0']:.3f}",
             f"{r['median_s']['0.5']:.3f}", f"{r['median_s']['0.75']:.3f}",
             f"{r['speedup']['0.5']:.2f}x", f"{r['speedup']['0.75']:.2f}x"] for r in results]  # fmt: skip
    table = md_table(["setting", "batch", "unmasked s/step", "50% s/step", "75% s/step",
                      "speed-up 50%", "speed-up 75%"], rows)  # fmt: skip
    meta = {"command": command_line(), "uptime_before": before, "uptime_after": uptime(),
            "environment": environment()}  # fmt: skip
    write_json({"results": results, **meta}, args.out + ".json")
    Path(args.out + ".md").write_text(
        "# FLIP image-tower step: masked vs unmasked (CPU)\n\n" + table + "\n\n"
        f"Command: `{meta['command']}`; host before: `{before}`; after: `{meta['uptime_after']}`\n"
    )
    print(table)


if __name__ == "__main__":
    main()
