"""Loader speed at 224 px from JPEG: how many cores keep one GPU fed?

Times the training data sources exactly as a run builds them (`visrep.data.pipeline.
build_train_data`): decode, RandomResizedCrop to 224 px, flip (MAE's single crop) or the two
SimCLR views (crop, flip, colour jitter, grayscale, blur), collate and normalise, for

- a folder of JPEGs (`FolderTrainData`: a DataLoader with `data.num_workers` processes;
  0 = decoded in the training process), and
- the same images as WebDataset shards (`key.jpg` only, with `sizes.json`), streamed by
  `data.num_workers` loader processes that each make every W-th sample (0 = in the
  training process; `visrep.data.pairs.ShardPairData._items`).

Rates are images per second after the first batch (worker start-up excluded), and per
worker: a GPU step rate divided by the per-worker rate is the number of loader cores it
needs. Build the images first (variable sizes around 320 px, like web photos):

    .venv/bin/python benchmarks/make_jpeg_folder.py --out /tmp/jpeg320 --n 3000 \
        --size 320 --size-jitter 0.3
    .venv/bin/python benchmarks/loader_224.py --folder /tmp/jpeg320

Writes benchmarks/results/loader_224.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import webdataset as wds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

from visrep.config import DataConfig  # noqa: E402
from visrep.data.pipeline import build_train_data  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def write_shards(folder: Path, out: Path, per_shard: int = 500) -> str:
    """The folder's JPEGs as image-only shards (`shard-NNNNNN.tar`) + sizes.json."""
    files = sorted(folder.rglob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for s in range(0, len(files), per_shard):
        name = f"shard-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(out / name)) as sink:
            for f in files[s : s + per_shard]:
                sink.write({"__key__": f.stem, "jpg": f.read_bytes()})
        sizes[name] = len(files[s : s + per_shard])
    (out / "sizes.json").write_text(json.dumps(sizes))
    return str(out / "*.tar")


def rate(dataset: str, views: str, workers: int, batch: int, steps: int) -> dict:
    data = DataConfig(dataset=dataset, img_size=224, channels=3, num_workers=workers,
                      views=views, crop_scale=(0.2, 1.0))  # fmt: skip
    source = build_train_data(data, batch, seed=0, rank=0, world_size=1,
                              device=torch.device("cpu"), text=False)  # fmt: skip
    it = source.batches(0, steps + 1)
    next(it)  # workers started, first batch out
    with CpuMeter() as meter:
        n = 0
        t0 = time.perf_counter()
        for b in it:
            n += len(b["views"][0] if "views" in b else b["images"])
        wall = time.perf_counter() - t0
    return {"img_per_s": n / wall, "images": n, "cpu": meter.as_dict()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True, help="output of make_jpeg_folder.py")
    p.add_argument("--shards", default="/tmp/visrep-loader-shards")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=str(RESULTS / "loader_224"))
    args = p.parse_args()
    torch.set_num_threads(1)  # the training process only collates and normalises
    train = Path(args.folder) / "train"
    shards = write_shards(train, Path(args.shards))
    out = {"command": command_line(), "environment": environment(), "uptime_before": uptime(),
           "matmul_gflops_before": round(matmul_gflops(), 1), "runs": []}  # fmt: skip
    rows = []
    for views in ("", "simclr"):
        for source, spec, workers in [("folder", str(train), w) for w in args.workers] + [
            ("shards", shards, w) for w in args.workers
        ]:
            r = rate(spec, views, workers, args.batch, args.steps)
            r |= {"source": source, "views": views or "single crop", "workers": workers}
            out["runs"].append(r)
            per = r["img_per_s"] / max(workers, 1)
            rows.append([source, r["views"], workers or "0 (in process)",
                         f"{r['img_per_s']:.0f}", f"{per:.0f}", f"{r['cpu']['cores_used']:.2f}"])  # fmt: skip
            print(rows[-1], flush=True)
    out |= {"uptime_after": uptime(), "matmul_gflops_after": round(matmul_gflops(), 1)}
    table = md_table(["source", "transform", "workers", "img/s", "img/s per worker",
                      "training-process cores"], rows)  # fmt: skip
    md = (f"# Loader speed at 224 px from JPEG ({out['environment']['cpu_count']} cores)\n\n"
          f"`{out['command']}`\n\n{table}\n\nBatch {args.batch}, {args.steps} batches after the "
          f"first; images around 320 px (±30%). Matmul probe {out['matmul_gflops_before']:.0f}"
          f" / {out['matmul_gflops_after']:.0f} GFLOP/s before / after; {out['uptime_before']};"
          f" after: {out['uptime_after']}.\n")  # fmt: skip
    write_json(out, args.out + ".json")
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
