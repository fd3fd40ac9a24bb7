"""`visrep graphs sweep`: train relational networks over WS-flex graphs that cover the (C, L)
plane, plus the complete graph, and write the table, the figures and the sweet-spot test.

You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020; official code
facebookresearch/graph2nn (`tools/train_net.py`, `pycls/models/optimizer.py`,
`pycls/utils/lr_policy.py`, configs `configs/baselines/cifar10/mlp_cifar10/*`).
Recipe: graph2nn `configs/baselines/cifar10/mlp_cifar10`, at Fashion-MNIST scale.

    visrep graphs sweep --model mlp5 --dataset fashion_mnist --graphs 48 --seeds 3 \\
        --epochs 10 --out runs/graphs_mlp --workers 2

Graphs: `visrep.graphs.sample_graphs` (bin-and-keep-first on a 12×12 (C, L) grid at n = 16)
and the complete graph. Recipe, fixed for every graph: SGD, momentum 0.9, Nesterov,
weight decay 5e-4 on all parameters, lr 0.1 with a per-epoch cosine ½·0.1·(1 + cos(π e / E)),
no warmup, batch 128, cross-entropy; augmentation random crop 28 with 2 px zero padding and
a horizontal flip (p 0.5); widths FLOPs-matched to the dense network (UPPER). Training seed s
seeds torch before the model is built and drives its own generator for shuffling and
augmentation; evaluation: top-1 on the test split (or its first `--limit-test` images).

Resumable: each finished (graph, seed) is one JSON line appended to `OUT/results.jsonl` with
a single write + fsync (a kill leaves at most one torn last line, which is ignored);
`OUT/sweep_config.json` fixes the graphs and the recipe, and a restarted sweep trains only
the (graph, seed) pairs not in the JSONL. `--workers W` trains W pairs at once in spawned
processes (one torch thread each unless `--threads`). At the end it writes `OUT/sweep.md`
(table and test), `OUT/sweep.json` and `OUT/sweep.png` (`visrep.graphs.analysis`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from visrep.data.augment import FMNIST_MEAN, FMNIST_STD
from visrep.data.fashion_mnist import DEFAULT_ROOT, is_fashion_mnist, load_fashion_mnist
from visrep.graphs import analysis
from visrep.graphs.generate import GraphSpec, candidate_grid, complete_spec, sample_graphs
from visrep.graphs.models import build_model, matched_width
from visrep.io import atomic_write_text

RESULTS = "results.jsonl"
CONFIG = "sweep_config.json"
RECIPE = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
          "lr": 0.1, "schedule": "cosine per epoch", "batch_size": 128, "pad": 2, "hflip": True}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not is_fashion_mnist(args.dataset):
        raise ValueError(f"--dataset {args.dataset!r}: only fashion_mnist is supported")
    out = Path(args.out)
    args.data_root = args.data_root or DEFAULT_ROOT
    config = sweep_config(args, out)
    specs = [GraphSpec.from_dict(d) for d in config["graphs"]]
    done = read_results(out / RESULTS)
    todo = [(s, seed) for seed in range(1, args.seeds + 1) for s in specs
            if (s.name, seed) not in done]  # fmt: skip
    total = len(specs) * args.seeds
    print(f"{len(specs)} graphs x {args.seeds} seeds: {total - len(todo)} done, "
          f"{len(todo)} to train -> {out / RESULTS}", file=sys.stderr, flush=True)  # fmt: skip
    job = {k: config[k] for k in ("model", "epochs", "data_root", "limit_train", "limit_test")}
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    bar = tqdm(total=len(todo), desc="graphs sweep", unit="run", file=sys.stderr)
    if args.workers <= 1 or len(todo) <= 1:
        _init_worker(job, threads)
        for spec, seed in todo:
            append_result(out / RESULTS, train_one(spec.to_dict(), seed))
            bar.update()
    else:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(job, threads)) as pool:  # fmt: skip
            futures = [pool.submit(train_one, s.to_dict(), seed) for s, seed in todo]
            for f in as_completed(futures):
                append_result(out / RESULTS, f.result())
                bar.update()
    bar.close()
    summary = write_report(out, config)
    print(f"wrote {out / 'sweep.md'}, sweep.json, sweep.png", file=sys.stderr)
    print(json.dumps(summary["claim"], indent=2))
    return 0


def sweep_config(args: argparse.Namespace, out: Path) -> dict:
    """The sweep's graphs and recipe: read from OUT/sweep_config.json when resuming (the
    command line must agree), else sampled and written."""
    want = {
        "model": args.model, "dataset": "fashion_mnist", "nodes": args.nodes,
        "epochs": args.epochs, "seeds": args.seeds, "num_graphs": args.graphs,
        "limit_train": args.limit_train, "limit_test": args.limit_test, "grid": args.grid,
        "data_root": str(args.data_root), "recipe": RECIPE,
    }  # fmt: skip
    path = out / CONFIG
    if path.exists():
        have = json.loads(path.read_text())
        diff = [k for k in want if k not in ("seeds", "data_root") and have.get(k) != want[k]]
        if diff:
            raise ValueError(f"{out} holds a sweep with other {', '.join(diff)} "
                             f"({', '.join(f'{k}={have.get(k)!r}' for k in diff)}); "
                             "use another --out or the same arguments")  # fmt: skip
        return {**have, "seeds": args.seeds, "data_root": want["data_root"]}
    num_k, num_p, seeds = (int(v) for v in args.grid.split(","))
    grid = candidate_grid(args.nodes, num_k, num_p, seeds)
    specs = sample_graphs(args.nodes, args.graphs, grid=grid) if args.graphs else []
    specs.append(complete_spec(args.nodes))
    config = {**want, "graphs": [s.to_dict() for s in specs]}
    atomic_write_text(path, json.dumps(config, indent=1) + "\n")
    return config


def read_results(path: Path) -> dict[tuple[str, int], dict]:
    """(graph name, seed) -> result row; a torn last line (a kill mid-write) is skipped."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[(r["graph"], r["seed"])] = r
    return rows


def append_result(path: Path, row: dict) -> None:
    """One JSON line, appended with a single write and fsynced (O_APPEND: whole lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            data = b"\n" + data  # after a torn line: start a fresh one
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


_DATA: dict = {}


def _init_worker(job: dict, threads: int) -> None:
    """Load the data once per process (normalised, train images zero-padded for the crop)."""
    torch.set_num_threads(threads)
    mean, std = FMNIST_MEAN[0], FMNIST_STD[0]
    x, y = load_fashion_mnist(job["data_root"], "train")
    xt, yt = load_fashion_mnist(job["data_root"], "test")
    if job["limit_train"]:
        x, y = x[: job["limit_train"]], y[: job["limit_train"]]
    if job["limit_test"]:
        xt, yt = xt[: job["limit_test"]], yt[: job["limit_test"]]
    pad = RECIPE["pad"]
    x = F.pad(x.float().div_(255), (pad, pad, pad, pad))  # zero = the black background
    _DATA.update(job=job, x=x.sub_(mean).div_(std), y=y,
                 xt=xt.float().div_(255).sub_(mean).div_(std), yt=yt)  # fmt: skip


def augment(x_pad: torch.Tensor, gen: torch.Generator, size: int = 28) -> torch.Tensor:
    """Random crop `size` from the padded batch and a horizontal flip with p 0.5."""
    b, span = x_pad.shape[0], x_pad.shape[-1] - size + 1
    dy, dx = (torch.randint(0, span, (2, b), generator=gen)).unbind(0)
    ar = torch.arange(size)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    out = x_pad[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    flip = torch.rand(b, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def train_one(spec_dict: dict, seed: int) -> dict:
    """Train one (graph, seed) with the fixed recipe and return its result row."""
    job, x, y = _DATA["job"], _DATA["x"], _DATA["y"]
    spec = GraphSpec.from_dict(spec_dict)
    graph = spec.graph()
    start = time.perf_counter()
    width = matched_width(job["model"], graph)
    torch.manual_seed(seed)
    model = build_model(job["model"], graph, width)
    opt = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"],
                          nesterov=True, weight_decay=RECIPE["weight_decay"])  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    bs, epochs, losses = RECIPE["batch_size"], job["epochs"], []
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = 0.5 * RECIPE["lr"] * (1 + math.cos(math.pi * epoch / epochs))
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total, steps = 0.0, 0
        for i in range(0, len(perm), bs):
            idx = perm[i : i + bs]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
        if not math.isfinite(losses[-1]):
            break
    top1 = evaluate(model, _DATA["xt"], _DATA["yt"])
    params = sum(
        int(m.mask.expand_as(p).sum()) if hasattr(m, "mask") and name == "weight" else p.numel()
        for m in model.modules() for name, p in m.named_parameters(recurse=False)
    )  # fmt: skip
    return {
        "graph": spec.name, "seed": seed, "kind": spec.kind, "n": spec.n, "k": spec.k,
        "p": spec.p, "graph_seed": spec.seed, "C": spec.C, "L": spec.L,
        "sparsity": spec.sparsity, "width": width, "params": params, "top1": top1,
        "train_loss": losses, "epochs": epochs, "seconds": time.perf_counter() - start,
        "model": job["model"],
    }  # fmt: skip


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum())
                  for i in range(0, len(x), bs))  # fmt: skip
    return 100.0 * correct / len(x)


def write_report(out: Path, config: dict, name: str = "sweep") -> dict:
    """Table, sweet spot, best bin vs complete graph, smoothness; `name`.md / .json / .png."""
    results = read_results(out / RESULTS)
    seeds = config["seeds"]
    rows, complete = [], None
    for d in config["graphs"]:
        runs = [results[(d["name"], s)] for s in range(1, seeds + 1) if (d["name"], s) in results]
        if not runs:
            continue
        row = {**{k: d[k] for k in ("name", "kind", "k", "p", "seed", "C", "L", "sparsity")},
               "width": runs[0]["width"], "top1": [r["top1"] for r in runs],
               "errors": [100.0 - r["top1"] for r in runs]}  # fmt: skip
        if d["kind"] == "complete":
            complete = row
        else:
            rows.append(row)
    summary: dict = {"config": {k: v for k, v in config.items() if k != "graphs"},
                     "runs_done": len(results), "runs_planned": len(config["graphs"]) * seeds}  # fmt: skip
    summary["graphs"] = [{k: v for k, v in r.items() if k != "errors"} for r in rows]
    if complete:
        summary["complete"] = {k: v for k, v in complete.items() if k != "errors"}
    lrange = analysis.l_range(config["nodes"])
    claim: dict = {"runs_done": summary["runs_done"], "runs_planned": summary["runs_planned"]}
    comp = None
    if rows:
        spot = analysis.sweet_spot(rows, 12, lrange)
        fit = analysis.smoothness(rows) if len(rows) >= 7 else {}
        summary.update(sweet_spot=spot, smoothness=fit)
        claim.update(best_bin={k: spot["best"][k] for k in ("C_centre", "L_centre", "mean_err")},
                     sweet_spot=spot["sweet_spot"], smoothness=fit)  # fmt: skip
        if complete:
            comp = {**analysis.best_vs_complete(spot["best"]["errors"], complete["errors"]),
                    "errors": complete["errors"]}  # fmt: skip
            claim["best_vs_complete"] = {k: v for k, v in comp.items() if k != "errors"}
            claim["held_out"] = analysis.held_out_best(rows, complete["errors"], 12, lrange)
        if fit:
            analysis.plot(rows, comp and {"mean_err": comp["complete_mean_err"],
                                          "se": comp["complete_se"], "errors": comp["errors"]},
                          spot, fit, out / f"{name}.png",
                          f"relational {config['model']} on Fashion-MNIST, n = {config['nodes']}, "
                          f"{len(rows)} WS-flex graphs + complete, {seeds} seeds, "
                          f"{config['epochs']} epochs")  # fmt: skip
    summary["claim"] = claim
    atomic_write_text(out / f"{name}.json", json.dumps(summary, indent=1, default=float) + "\n")
    atomic_write_text(out / f"{name}.md", report_markdown(summary, rows, complete))
    return summary


def _f(v, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def report_markdown(summary: dict, rows: list[dict], complete: dict | None) -> str:
    cfg, claim = summary["config"], summary["claim"]
    lines = [
        f"# Relational graphs: {cfg['model']} on Fashion-MNIST",
        "",
        f"{len(rows)} WS-flex graphs (n = {cfg['nodes']}) + the complete graph, "
        f"{cfg['seeds']} seeds, {cfg['epochs']} epochs, train images: "
        f"{cfg['limit_train'] or 'all 60,000'}, test images: {cfg['limit_test'] or 'all 10,000'}; "
        f"runs done {claim['runs_done']} of {claim['runs_planned']}. Recipe: {cfg['recipe']}.",
        "",
    ]  # fmt: skip
    if "best_vs_complete" in claim:
        b = claim["best_vs_complete"]
        spot = claim["sweet_spot"]
        lines += [
            "## Best (C, L) bin against the complete graph",
            "",
            f"- complete graph: top-1 {_f(100 - b['complete_mean_err'])} % "
            f"(error {_f(b['complete_mean_err'])} ± SE {_f(b['complete_se'])})",
            f"- best bin (C ≈ {_f(claim['best_bin']['C_centre'])}, L ≈ "
            f"{_f(claim['best_bin']['L_centre'])}): top-1 {_f(100 - b['best_bin_mean_err'])} % "
            f"(error {_f(b['best_bin_mean_err'])} ± SE {_f(b['best_bin_se'])})",
            f"- gap (complete − best, error points): {_f(b['gap'])} ± {_f(b['gap_se'])} (SE of "
            f"the gap); beats the complete graph by more than the SE: "
            f"**{'yes' if b['beats_by_more_than_se'] else 'no'}**; Student t = {_f(b['t'])}, "
            f"p = {_f(b['p'], 3)}",
            f"- sweet spot (bins not significantly worse than the best, t-test one-sided 5 %): "
            f"C ∈ [{_f(spot['C'][0])}, {_f(spot['C'][1])}], L ∈ [{_f(spot['L'][0])}, "
            f"{_f(spot['L'][1])}], {spot['bins_kept']} of {spot['bins_occupied']} occupied bins",
        ]  # fmt: skip
        if claim.get("held_out"):
            h = claim["held_out"]
            lines.append(
                f"- winner's-curse check: the best bin picked on the first {h['picked_on_seeds']} "
                f"seeds has held-out (last seed) error {_f(h['held_out_bin_mean_err'])} vs the "
                f"complete graph's {_f(h['held_out_complete_err'])}"
            )
    if claim.get("smoothness"):
        s = claim["smoothness"]
        lines += [
            "",
            "## Smoothness of accuracy over (C, L)",
            "",
            f"- quadratic fit of per-graph mean error on (C, L): R² = {_f(s['r2'])}, "
            f"leave-one-out R² = {_f(s['r2_loo'])}",
            f"- Pearson r(error, C) = {_f(s['pearson_err_C'])}, r(error, L) = "
            f"{_f(s['pearson_err_L'])}; split-seed reliability of per-graph errors = "
            f"{_f(s['split_seed_reliability'])}",
            f"- for comparison, a line in the relational width alone (FLOPs matching makes "
            f"sparser graphs wider): R² = {_f(s.get('r2_width_only'))}",
        ]  # fmt: skip
    lines += ["", "## Graphs", "",
              "| graph | k | p | seed | C | L | sparsity | width | top-1 per seed | mean |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in ([complete] if complete else []) + sorted(rows, key=lambda r: -np.mean(r["top1"])):
        lines.append(
            f"| {r['name']} | {_f(r['k'])} | {_f(r['p'], 4)} | {r['seed']} | {_f(r['C'], 3)} | "
            f"{_f(r['L'], 3)} | {_f(r['sparsity'], 3)} | {r['width']} | "
            f"{', '.join(_f(t) for t in r['top1'])} | {_f(float(np.mean(r['top1'])))} |"
        )
    return "\n".join(lines) + "\n"
