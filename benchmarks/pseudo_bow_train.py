"""Training on pseudo-BoW captions (Tejankar et al. 2021, "A Fistful of Words: Learning
Transferable Visual Models from Bag-of-Words Supervision", Sec. 4: a BoW-trained model
captions unpaired images with its top words, and those pseudo-captions train a CLIP model
that zero-shots, alone or added to the paired data).

The BoW model is the `clip_bow` row of `benchmarks/clip_family.py` (`clip_bow_fmnist`, 120
steps of batch 32 on the first 3,840 Fashion-MNIST train images, the paired data). The
next `--n-unpaired` train images (never in its training data) get pseudo-BoW captions from
it (`visrep data pseudo-bow --k 3`). Every arm then trains `clip_bow_fmnist` from scratch with
the clip-family row's settings (batch 32, blr 4e-3, seed 0, one thread; warmup 0.1 + cosine
over the run) from a JSONL of (image, caption):

- `paired`: the 3,840 paired images, each with one template sentence of its class name
  (drawn once per image, seeded; the in-memory `clip_bow` row draws one per step), 1 epoch
  = 120 steps;
- `paired_2ep`: the same, 2 epochs = 240 steps (the step count of `paired+pseudo`);
- `paired+pseudo`: paired + pseudo-captioned images, 1 epoch = 240 steps;
- `pseudo`: the pseudo-captioned images only, 1 epoch = 120 steps.

Zero-shot top-1/top-5 on the first 2,000 Fashion-MNIST test images with the 7 unseen ImageNet
templates in BoW form (`visrep eval zeroshot eval.limit_test=2000`), as the clip-family table.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/pseudo_bow_train.py \\
        > /tmp/pseudo_bow_train.log 2>&1 &

    # a second seed (training and the paired captions' draw; the same pseudo-captions)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_bow_train.py --seed 1 \\
        --work /tmp/visrep-pseudo-bow-train-s1 --name pseudo_bow_train_s1

Writes benchmarks/results/NAME.{json,md} (default pseudo_bow_train) after every arm.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

from visrep.config import FMNIST_ROOT  # noqa: E402
from visrep.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from visrep.data.templates import FMNIST_CLASSNAMES, template_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VISREP = [sys.executable, "-m", "visrep.cli"]
N_PAIRED = 3840  # clip_family.py's data.limit: the BoW model's paired data
COMMON = ["optim.batch_size=32", "optim.blr=4e-3", "eval.final=False", "run.threads=1",
          "run.progress=False"]  # fmt: skip
# arm -> (pair files, epochs)
ARMS = {
    "paired": (["paired"], 1),
    "paired_2ep": (["paired"], 2),
    "paired+pseudo": (["paired", "pseudo"], 1),
    "pseudo": (["pseudo"], 1),
}


def write_images(images, labels, start: int, n: int, folder: Path) -> list[tuple[Path, int]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        path = folder / f"{i:05d}.png"
        if not path.exists():
            Image.fromarray(images[i, 0].numpy()).save(path)
        out.append((path.resolve(), int(labels[i])))
    return out


def build_data(work: Path, bow_run: str, n_unpaired: int, k: int, seed: int) -> dict:
    """paired.jsonl (template sentences), pseudo.jsonl (pseudo-BoW of the unpaired images)
    and how often a pseudo-caption names the image's true class."""
    images, labels = load_fashion_mnist(FMNIST_ROOT, "train")
    paired = write_images(images, labels, 0, N_PAIRED, work / "paired")
    templates, rng = template_set("fmnist_train"), random.Random(seed)
    rows = [{"image_path": str(p), "caption": rng.choice(templates).format(FMNIST_CLASSNAMES[y])}
            for p, y in paired]  # fmt: skip
    (work / "paired.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    unpaired = write_images(images, labels, N_PAIRED, n_unpaired, work / "unpaired")
    pseudo = work / "pseudo.jsonl"
    if not pseudo.exists():
        subprocess.run([*VISREP, "data", "pseudo-bow", "--ckpt", bow_run, "--images",
                        str(work / "unpaired"), "--out", str(pseudo), "--k", str(k)],
                       check=True)  # fmt: skip
    label = {str(p): y for p, y in unpaired}
    got = [json.loads(x) for x in pseudo.read_text().splitlines()]
    first = anyw = 0
    for r in got:
        name = set(FMNIST_CLASSNAMES[label[r["image_path"]]].split())
        words = r["caption"].lower().split()
        first += words[0] in name
        anyw += bool(name & set(words))
    return {"n_paired": len(rows), "n_pseudo": len(got), "k": k,
            "pseudo_first_word_in_class_name": first / len(got),
            "pseudo_any_word_in_class_name": anyw / len(got),
            "pseudo_examples": [r["caption"] for r in got[:8]]}  # fmt: skip


def run_arm(name: str, work: Path, runs: Path, seed: int) -> dict:
    files, epochs = ARMS[name]
    table = work / f"{'+'.join(files)}.jsonl"
    if not table.exists():
        table.write_text("".join((work / f"{f}.jsonl").read_text() for f in files))
    out = runs / name
    cmd = ["train", "clip_bow_fmnist", f"data.dataset={table}", f"optim.epochs={epochs}",
           *COMMON, f"run.seed={seed}", f"run.out_dir={out}"]  # fmt: skip
    row = {"arm": name, "command": " ".join(["visrep", *cmd]), "uptime_before": uptime()}
    if not (out / "metrics.json").exists():
        t0 = time.perf_counter()
        subprocess.run([*VISREP, *cmd], check=True)
        row["train_wall_s"] = round(time.perf_counter() - t0, 1)
    zs = out / "zeroshot.json"
    if not zs.exists():
        subprocess.run([*VISREP, "eval", "zeroshot", "--ckpt", str(out), "eval.limit_test=2000",
                        "--out", str(zs)], check=True)  # fmt: skip
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if "train/loss" in r]
    return row | {"pairs": sum(1 for _ in table.read_text().splitlines()),
                  "steps": train[-1]["step"], "last_loss": train[-1]["train/loss"],
                  "zeroshot": json.loads(zs.read_text()), "uptime_after": uptime()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bow-run", default="/tmp/visrep-clip-family/clip_bow")
    p.add_argument("--n-unpaired", type=int, default=3840)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--arms", nargs="*", default=list(ARMS))
    p.add_argument("--work", default="/tmp/visrep-pseudo-bow-train")
    p.add_argument("--seed", type=int, default=0, help="run.seed and the paired captions' draw")
    p.add_argument("--name", default="pseudo_bow_train", help="results file name")
    args = p.parse_args()
    work = Path(args.work)
    if not (Path(args.bow_run) / "checkpoint.pt").exists():
        raise SystemExit(f"no BoW run at {args.bow_run}: run benchmarks/clip_family.py "
                         "--rows clip_bow first")  # fmt: skip
    out = {"command": command_line(), "environment": environment(), "bow_run": args.bow_run,
           "data": build_data(work, args.bow_run, args.n_unpaired, args.k, args.seed),
           "rows": []}  # fmt: skip
    for name in args.arms:
        out["rows"].append(run_arm(name, work, work / "runs", args.seed))
        write_json(out, RESULTS / f"{args.name}.json")
        write_md(out, args.name)


def write_md(out: dict, name: str) -> None:
    d = out["data"]
    rows = [[f"`{r['arm']}`", f"{r['pairs']:,}", r["steps"], f"{r['last_loss']:.3f}",
             f"{r['zeroshot']['zeroshot_top1']:.3f}", f"{r['zeroshot']['zeroshot_top5']:.3f}",
             f"{r['train_wall_s']:.0f} s" if "train_wall_s" in r else "–",
             r["uptime_before"].rsplit("load average:", 1)[-1].split(",")[0].strip()]
            for r in out["rows"]]  # fmt: skip
    md = (
        "# Training CLIP on pseudo-BoW captions (Fashion-MNIST, clip_bow_fmnist)\n\n"
        f"`{out['command']}`; BoW model `{out['bow_run']}`. Each arm: "
        f"`{out['rows'][0]['command'] if out['rows'] else ''}` (its own data.dataset / "
        "optim.epochs), then `visrep eval zeroshot --ckpt RUN eval.limit_test=2000`.\n\n"
        f"{d['n_pseudo']:,} unpaired train images pseudo-captioned (k = {d['k']}): the first word "
        f"names the true class for {d['pseudo_first_word_in_class_name']:.1%}, some word for "
        f"{d['pseudo_any_word_in_class_name']:.1%}. Examples: "
        + ", ".join(f"“{c}”" for c in d["pseudo_examples"][:5])
        + ".\n\n"
        + md_table(
            [
                "arm",
                "pairs",
                "steps",
                "last loss",
                "zero-shot top-1",
                "top-5",
                "train wall",
                "load",
            ],
            rows,
        )  # fmt: skip
        + "\n"
    )
    (RESULTS / f"{name}.md").write_text(md)
    print(md, flush=True)


if __name__ == "__main__":
    main()
