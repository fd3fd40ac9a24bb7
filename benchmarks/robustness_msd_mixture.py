"""MSD mechanics on real features: the augmentation-corruption notebook's experiment
(facebookresearch/augmentation-corruption `minimal_sample_distance.ipynb`; Mintun et al.,
NeurIPS 2021, Fig. 2) in small. Target corruption: impulse noise, severity 3; augmentation:
a mixture of impulse noise (fraction p) and motion blur (1 − p), both severity 3. Expected:
MSD stays near its p = 1 value for every p > 0 (one impulse-noise sample is enough to be
near the target) and jumps at p = 0, while MMD (distance between means) grows steadily as p
falls. f̂: the frozen MAE demo encoder (`runs/demo`) on Fashion-MNIST training images.

    .venv/bin/python benchmarks/robustness_msd_mixture.py --n-aug 100 --n-corr 20 --n-images 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from host import CpuMeter, command_line, environment, md_table, uptime, write_json

from visrep.data.preprocess import model_preprocess
from visrep.data.sampling import stratified_subset
from visrep.evals.msd import (
    corruption_apply,
    corruption_seeds,
    embed_mixture,
    mixture_apply,
    mmd,
    msd,
    transform_embedding,
)
from visrep.robustness import eval_split
from visrep.runs import load_run

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="runs/demo")
    p.add_argument("--fractions", default="0,0.5,0.9,0.99,1")
    p.add_argument("--n-aug", type=int, default=100)
    p.add_argument("--n-corr", type=int, default=20)
    p.add_argument("--n-images", type=int, default=20)
    p.add_argument("--name", default="robustness_msd_mixture")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg, model = load_run(args.encoder)
    pre = model_preprocess(cfg.data)

    def f_hat(x: torch.Tensor) -> torch.Tensor:
        return model.backbone(pre(x))

    x, y = eval_split(cfg, "train", 0)
    images = x[stratified_subset(y, args.n_images, 0)]
    target = corruption_apply("impulse_noise", 3)
    blur = corruption_apply("motion_blur", 3)
    host = {"uptime_before": uptime()}
    rows, out = [], {}
    with CpuMeter() as meter, torch.no_grad():
        corr = transform_embedding(f_hat, images, target, corruption_seeds(args.n_corr))
        for frac in [float(f) for f in args.fractions.split(",")]:
            pick = mixture_apply([(target, frac), (blur, 1 - frac)])
            aug = embed_mixture(f_hat, images, pick, range(args.n_aug))
            out[frac] = {"msd": msd(aug, corr), "mmd": mmd(aug, corr)}
            rows.append([frac, f"{out[frac]['msd']:.3f}", f"{out[frac]['mmd']:.3f}"])
    host |= {"uptime_after": uptime(), **meter.as_dict(), **environment()}
    write_json({"command": command_line(), "host": host, "args": vars(args), "results": out},
               RESULTS / f"{args.name}.json")  # fmt: skip
    md = [f"# MSD vs MMD, impulse-noise target, impulse/motion-blur mixture ({args.encoder})",
          "", f"Command: `{command_line()}`", "",
          md_table(["impulse-noise fraction p", "MSD", "MMD"], rows), "",
          f"|A| = {args.n_aug} augmentation draws, M = {args.n_corr} corruption draws, |D_S| = "
          f"{args.n_images} training images. Host (shared): `{host['uptime_before']}` / "
          f"`{host['uptime_after']}`, wall {host['wall_s']} s."]  # fmt: skip
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
