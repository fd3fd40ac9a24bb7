"""MAE-ST's training step at 90% masking vs the same ViT with mask tokens in the encoder
(MAE-ST paper, Feichtenhofer et al. NeurIPS 2022, Sec. 5: removing 90% of the tokens from the
encoder makes the step several times faster; `method.encoder_mask_tokens` is the baseline
that encodes every token, removed ones as a learned mask token, as MAE's Table 1c).

A step = MAE-ST forward (encoder, decoder, norm-pix loss on removed tokens), backward, AdamW
step. Every round times both variants once, interleaved; times are medians over rounds and
the speed-up is the median of per-round ratios (the host is shared). FLOPs of forward +
backward come from torch.utils.flop_counter (matmuls and convolutions).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_mae_st_speed.py
    # -> benchmarks/results/video_mae_st_speed.{md,json}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

from visrep.backbones.video_vit import VideoViT  # noqa: E402
from visrep.methods.mae_st import MAEST, MAESTConfig  # noqa: E402

SETTINGS = {
    # mae_st_mfmnist: ViT-Tiny/8, 8 frames of 64 px, 4 x 8 x 8 = 256 tokens, 2 x 128 decoder
    "mae_st_mfmnist": dict(arch="vit_tiny", img=64, patch=8, frames=8, batch=16,
                           dec=dict(decoder_dim=128, decoder_depth=2, decoder_heads=4,
                                    pred_t_dim=4)),
    # the paper's token count: 16 frames at 224 px, 2 x 16 x 16 tubelets = 1568 tokens, with
    # the paper's 4 x 512 decoder and a ViT-Tiny encoder (a ViT-L step is minutes on a CPU)
    "vit_tiny16_224px_16f": dict(arch="vit_tiny", img=224, patch=16, frames=16, batch=2,
                                 dec=dict(decoder_dim=512, decoder_depth=4, decoder_heads=16,
                                          pred_t_dim=8)),
}  # fmt: skip


def build(s: dict, baseline: bool) -> tuple[MAEST, torch.optim.Optimizer]:
    torch.manual_seed(0)
    bb = VideoViT(s["arch"], img_size=s["img"], patch_size=s["patch"], frames=s["frames"])
    m = MAEST(MAESTConfig(mask_ratio=0.9, encoder_mask_tokens=baseline, **s["dec"]), bb).train()
    return m, torch.optim.AdamW(m.parameters(), lr=1e-4)


def step(m: MAEST, opt, batch: dict) -> float:
    t0 = time.perf_counter()
    loss = m(batch)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def flops(m: MAEST, batch: dict) -> int:
    with FlopCounterMode(display=False) as counter:
        m(batch)["loss"].backward()
    m.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def run(name: str, s: dict, rounds: int) -> dict:
    x = torch.randn(s["batch"], 3, s["frames"], s["img"], s["img"],
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    batch = {"images": x}
    models = {b: build(s, b) for b in (False, True)}
    out = {"setting": name, **{k: v for k, v in s.items() if k != "dec"}, **s["dec"],
           "tokens": models[False][0].backbone.num_patches}  # fmt: skip
    out["gflops_masked"] = flops(models[False][0], batch) / 1e9
    out["gflops_baseline"] = flops(models[True][0], batch) / 1e9
    for b in (False, True):  # warm-up
        step(*models[b], batch)
    times = {False: [], True: []}
    for _ in range(rounds):
        for b in (False, True):
            times[b].append(step(*models[b], batch))
    ratios = [t / f for f, t in zip(times[False], times[True])]
    out |= {"step_s_masked": statistics.median(times[False]),
            "step_s_baseline": statistics.median(times[True]),
            "speedup": statistics.median(ratios), "rounds": rounds,
            "flop_ratio": out["gflops_baseline"] / out["gflops_masked"]}  # fmt: skip
    print(out, flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--settings", nargs="*", default=list(SETTINGS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    res = {"command": command_line(), "environment": environment(), "uptime_before": uptime(),
           "matmul_gflops_before": round(matmul_gflops(), 1)}  # fmt: skip
    res["results"] = [run(n, SETTINGS[n], args.rounds) for n in args.settings]
    res |= {"uptime_after": uptime(), "matmul_gflops_after": round(matmul_gflops(), 1)}
    out = HERE / "results" / "video_mae_st_speed"
    write_json(res, out.with_suffix(".json"))
    rows = [[r["setting"], r["tokens"], r["batch"], f"{r['step_s_masked']:.3f}",
             f"{r['step_s_baseline']:.3f}", f"{r['speedup']:.2f}×", f"{r['flop_ratio']:.2f}×"]
            for r in res["results"]]  # fmt: skip
    head = ["setting", "tokens", "batch", "step s (90% removed)", "step s (encoder w/ [M])",
            "speed-up", "FLOP ratio"]  # fmt: skip
    out.with_suffix(".md").write_text(
        f"# MAE-ST step: 90% of tokens removed vs mask tokens in the encoder\n\nCommand: "
        f"`{res['command']}`\n\n{md_table(head, rows)}\n\nHost (shared, 1 thread): "
        f"{res['uptime_before']} -> {res['uptime_after']}; matmul probe "
        f"{res['matmul_gflops_before']} / {res['matmul_gflops_after']} GFLOP/s.\n"
    )


if __name__ == "__main__":
    main()
