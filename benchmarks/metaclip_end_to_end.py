"""MetaCLIP end to end: CLIP on the balanced subset vs the unbalanced pool vs a seeded random
subset of the balanced subset's size, same model, steps, batch, lr and seed (MetaCLIP paper
Sec. 3-4; docs/curation.md). Fashion-MNIST zero-shot (test split, the 7 unseen ImageNet
templates) and image<->text retrieval on held-out emoji pairs (never trained on, not in the
pool) side by side, with the head/tail distribution plot of the balance step.

The pool is built from the offline sources (`visrep data build-captions`): the Noto emoji
(npm emoji-datasource-google 16.0.0, 3,786 pairs, a long tail of names) and the first
`--fmnist-limit` Fashion-MNIST train images captioned with one of 5 templates around the
class name (a head: ten names repeated a thousand times). Held out: `--held-out` emoji pairs
whose caption occurs once in the pool, seeded. Metadata: WordNet and the numbers 0-99 (86,654 entries) plus the
Fashion-MNIST class names, standing in for MetaCLIP's Wikipedia unigrams/titles, which
cannot be built offline and would hold them (WordNet alone has no "sneaker" or "t-shirt" entry:
those captions would match only "a", "image", ..., head entries all, and balancing would keep
them at about a third of the other classes' rate).

Run (2 shared cores; about 25 minutes):

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/metaclip_end_to_end.py \\
        > /tmp/metaclip_e2e.log 2>&1 &
    # a second seed (training, balance draw and random subset; same pool and held-out pairs)
    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/metaclip_end_to_end.py --seed 1 \\
        --work /tmp/metaclip_e2e_s1 --name metaclip_end_to_end_s1 > /tmp/metaclip_e2e_s1.log 2>&1 &

Writes benchmarks/results/NAME.{md,json} and NAME_distribution.png (the balance step's
rank-frequency plot); the JSON after every arm, so an interrupted run keeps its rows.
Training: clip_fmnist (ViT-Tiny/4, 6 blocks, 28 px grey; tiny text tower), a constant lr
(no warm-up, `optim.min_lr_ratio=1`) so that every arm gets the same lr at every step
whatever its size, `run.max_steps` steps of `--batch`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def visrep(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "visrep.cli", *args], check=True,
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    return proc.stdout


def split_pool(built: Path, pool: Path, held: Path, n_held: int, seed: int) -> dict:
    """Copy the built shards to `pool` without `n_held` emoji pairs whose caption is unique
    in the pool; those go to `held/held_out.jsonl` (+ images) for retrieval."""
    from webdataset import TarWriter

    samples: dict[str, list[tuple[str, dict]]] = {}
    for tar in sorted(built.glob("*.tar")):
        with tarfile.open(tar) as tf:
            got: dict[str, dict] = {}
            for m in tf.getmembers():
                key, _, ext = m.name.partition(".")
                got.setdefault(key, {})[ext] = tf.extractfile(m).read()
        samples[tar.name] = list(got.items())
    count = Counter(s["txt"] for items in samples.values() for _, s in items)
    emoji = [k for k, s in samples["emoji-000000.tar"] if count[s["txt"]] == 1]
    chosen = set(random.Random(seed).sample(sorted(emoji), n_held))
    pool.mkdir(parents=True, exist_ok=True)
    (held / "img").mkdir(parents=True, exist_ok=True)
    sizes, rows = {}, []
    for name, items in samples.items():
        with TarWriter(str(pool / name)) as w:
            for key, s in items:
                if key in chosen:
                    (held / "img" / f"{key}.png").write_bytes(s["png"])
                    rows.append({"image_path": f"img/{key}.png", "caption": s["txt"].decode()})
                    continue
                w.write({"__key__": key, "png": s["png"], "txt": s["txt"]})
                sizes[name] = sizes.get(name, 0) + 1
    (pool / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    (held / "held_out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"pool_sizes": sizes, "held_out": len(rows)}


def random_subset(matched: Path, n: int, seed: int, out: Path) -> None:
    """A seeded uniform sample of `n` pool records, written as a `subset.tsv`."""
    from visrep.curation.pipeline import load_match_output
    from visrep.curation.shard_matches import ShardMatches

    summary, _ = load_match_output(matched)
    records = []
    for item in summary["outputs"]:
        m = ShardMatches.load(item["output"])
        records += [(m.source, int(r), str(k)) for r, k in zip(m.rows, m.keys)]
    pick = sorted(random.Random(seed).sample(records, n))
    out.mkdir(parents=True, exist_ok=True)
    (out / "subset.tsv").write_text(
        "shard\trow\tkey\n" + "".join(f"{s}\t{r}\t{k}\n" for s, r, k in pick)
    )


def composition(subset: Path | None, pool: Path) -> dict:
    """Pairs per source (the key's prefix) and distinct captions of an arm's training set."""
    if subset is None:
        keys = []
        for tar in sorted(pool.glob("*.tar")):
            with tarfile.open(tar) as tf:
                keys += [
                    (tar.name, m.name.partition(".")[0]) for m in tf if m.name.endswith(".txt")
                ]
    else:
        lines = (subset / "subset.tsv").read_text().splitlines()[1:]
        keys = [(Path(x.split("\t")[0]).name, x.split("\t")[2]) for x in lines]
    src = Counter(k.split("_")[0] for _, k in keys)
    return {"pairs": len(keys), "fmnist": src.get("fmnist", 0), "emoji": src.get("emoji", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/metaclip_e2e")
    ap.add_argument("--fmnist-limit", type=int, default=10_000)
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--t", type=float, default=200, help="balance threshold")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="training, balance and random-subset seed")
    ap.add_argument("--split-seed", type=int, default=0, help="which emoji pairs are held out")
    ap.add_argument("--name", default="metaclip_end_to_end", help="results/NAME.{md,json}")
    ap.add_argument("--arms", default="balanced,pool,random")
    ap.add_argument("--common", nargs="*", default=[
        "optim.lr=5e-4", "optim.warmup_epochs=0", "optim.min_lr_ratio=1.0",
        "optim.epochs=1000", "eval.final=False", "run.progress=False", "run.log_every=50",
        "run.threads=1"])  # fmt: skip
    args = ap.parse_args()
    work = Path(args.work)
    result: dict = {"command": command_line(), "environment": environment(),
                    "uptime_before": uptime(), "args": vars(args), "runs": []}  # fmt: skip

    # 1. the pool, the held-out pairs, the metadata; 2. match and balance
    built, pool, held = work / "built", work / "pool", work / "held"
    if not (pool / "sizes.json").is_file():
        shutil.rmtree(work, ignore_errors=True)
        visrep("data", "build-captions", "--sources", "emoji,fmnist", "--fmnist-limit",
               str(args.fmnist_limit), "--emoji-root", str(ROOT / "emoji-datasource-google-16.0.0.tgz"),
               "--out", str(built))  # fmt: skip
        split = split_pool(built, pool, held, args.held_out, args.split_seed)
        (work / "split.json").write_text(json.dumps(split) + "\n")
    result["split"] = json.loads((work / "split.json").read_text())
    from visrep.data.templates import FMNIST_CLASSNAMES

    (work / "classnames.txt").write_text("\n".join(FMNIST_CLASSNAMES) + "\n")
    meta, matched, balanced = work / "metadata.json", work / "matched", work / "balanced"
    visrep("curate", "build-metadata", "--out", str(meta), "--list", str(work / "classnames.txt"))
    visrep("curate", "match", str(pool), "--metadata", str(meta), "--out", str(matched),
           "--workers", "1", "--no-progress")  # fmt: skip
    visrep("curate", "balance", str(matched), "--t", str(args.t), "--seed", str(args.seed),
           "--out", str(balanced), "--no-progress")  # fmt: skip
    report = json.loads((balanced / "report.json").read_text())
    random_subset(matched, report["texts_kept"], args.seed, work / "random")
    shutil.copy(balanced / "distribution.png", RESULTS / f"{args.name}_distribution.png")
    result["balance"] = {k: report[k] for k in report if not isinstance(report[k], list | dict)}
    result["balance"]["top_entries"] = report.get("top_entries", [])[:15]

    # 3. the three arms
    subsets = {"balanced": balanced, "pool": None, "random": work / "random"}
    rows = []
    for arm in args.arms.split(","):
        run = work / "runs" / arm
        shutil.rmtree(run, ignore_errors=True)
        train = ["train", "clip_fmnist", f"data.dataset={pool}", f"run.out_dir={run}",
                 f"run.seed={args.seed}", f"optim.batch_size={args.batch}",
                 f"run.max_steps={args.steps}", *args.common]  # fmt: skip
        if subsets[arm] is not None:
            train.append(f"data.subset={subsets[arm]}")
        load0, t0 = uptime(), time.perf_counter()
        visrep(*train)
        wall = time.perf_counter() - t0
        load1 = uptime()
        visrep("eval", "zeroshot", "--ckpt", str(run))
        zs = json.loads((run / "eval_zeroshot.json").read_text())
        visrep("eval", "retrieval", "--ckpt", str(run), "--pairs", str(held / "held_out.jsonl"))
        rt = json.loads((run / "eval_retrieval.json").read_text())
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        steps = max(x.get("step", 0) for x in log)
        losses = [x["train/loss"] for x in log if "train/loss" in x]
        comp = composition(subsets[arm], pool)
        rec = {"arm": arm, "command": "visrep " + " ".join(train), "steps": steps,
               "images_seen": steps * args.batch, "train_wall_s": round(wall, 1),
               "uptime_before": load0, "uptime_after": load1, "final_loss": losses[-1] if losses else None,
               "composition": comp} | {k: zs[k] for k in ("zeroshot_top1", "zeroshot_top5")} | {
               k: v for k, v in rt.items() if "R@" in k or k.startswith("retrieval_n")}  # fmt: skip
        result["runs"].append(rec)
        write_json(
            result, RESULTS / f"{args.name}.json"
        )  # after every arm: a partial run keeps its rows
        load = load0.rpartition("load average: ")[2].split(",")[0]
        rows.append([arm, f"{comp['pairs']:,} ({comp['fmnist']:,} / {comp['emoji']:,})",
                     steps, f"{steps * args.batch:,}", f"{zs['zeroshot_top1']:.3f}",
                     f"{zs['zeroshot_top5']:.3f}", f"{rt['i2t_R@1']:.3f}", f"{rt['i2t_R@10']:.3f}",
                     f"{rt['t2i_R@1']:.3f}", f"{rt['t2i_R@10']:.3f}",
                     f"{rec['final_loss']:.2f}" if losses else "", f"{wall:.0f}", load])  # fmt: skip
    result["uptime_after"] = uptime()
    write_json(result, RESULTS / f"{args.name}.json")
    table = md_table(["arm", "pairs (fmnist / emoji)", "steps", "images seen", "zero-shot top-1",
                      "top-5", "i→t R@1", "i→t R@10", "t→i R@1", "t→i R@10", "final loss",
                      "train s", "load (1 min)"], rows)  # fmt: skip
    b = result["balance"]
    cmds = "\n".join(f"- {r['arm']}: `{r['command']}`" for r in result["runs"])
    (RESULTS / f"{args.name}.md").write_text(
        f"# MetaCLIP end to end: balanced vs pool vs random subset\n\n`{command_line()}`\n\n"
        f"Balance: t = {args.t:g}, {b.get('texts_kept', '?'):,} of the pool's "
        f"{sum(result['split']['pool_sizes'].values()):,} captions kept, "
        f"{b.get('head_entries', '?')} head entries. Retrieval: {args.held_out} held-out emoji "
        f"pairs. Host: {result['uptime_after']}.\n\n{table}\n\nCommands:\n\n{cmds}\n\n"
        f"![distribution]({args.name}_distribution.png)\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
