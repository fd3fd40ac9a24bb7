"""How good are pseudo-BoW captions (Tejankar et al. 2021)? `visrep data pseudo-bow` with the
balanced bag-of-words CLIP run of `benchmarks/clip_family.py` on the first `--n` Fashion-MNIST
test images: how often its first word, or any of its k words, is a word of the true class name.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_bow_check.py \\
        --ckpt /tmp/visrep-clip-family/clip_bow

Writes benchmarks/results/pseudo_bow_check.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, uptime, write_json  # noqa: E402

from visrep.config import FMNIST_ROOT  # noqa: E402
from visrep.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from visrep.data.templates import FMNIST_CLASSNAMES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="/tmp/visrep-clip-family/clip_bow")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--k", type=int, default=3)
    args = p.parse_args()
    images, labels = load_fashion_mnist(FMNIST_ROOT, "test")
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "fm_test", Path(tmp) / "pseudo.jsonl"
        folder.mkdir()
        for i in range(args.n):
            Image.fromarray(images[i, 0].numpy()).save(folder / f"{i:04d}_{int(labels[i])}.png")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "visrep.cli", "data", "pseudo-bow", "--ckpt",
                        args.ckpt, "--images", str(folder), "--out", str(out), "--k",
                        str(args.k)], check=True)  # fmt: skip
        seconds = time.perf_counter() - t0
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    first = anyw = 0
    vocab: set[str] = set()
    for r in rows:
        label = int(Path(r["image_path"]).stem.split("_")[1])
        name = set(FMNIST_CLASSNAMES[label].split())  # BoW words keep hyphens: "t-shirt"
        words = r["caption"].lower().split()
        vocab.update(words)
        first += words[0] in name
        anyw += bool(name & set(words))
    res = {"command": command_line(), "ckpt": args.ckpt, "n": len(rows), "k": args.k,
           "first_word_in_class_name": first / len(rows), "any_word_in_class_name": anyw / len(rows),
           "distinct_words_used": len(vocab), "seconds": round(seconds, 1), "uptime": uptime(),
           "examples": [{"image": Path(r["image_path"]).name, "caption": r["caption"]}
                        for r in rows[:10]]}  # fmt: skip
    write_json(res, RESULTS / "pseudo_bow_check.json")
    md = (f"# Pseudo-BoW captions of {len(rows)} Fashion-MNIST test images (k = {args.k})\n\n"
          f"`{res['command']}` (model: `{args.ckpt}`)\n\n"
          f"- first word is a word of the true class name: **{res['first_word_in_class_name']:.1%}**\n"
          f"- some word of the {args.k} is: **{res['any_word_in_class_name']:.1%}**\n"
          f"- {len(vocab)} distinct words used; {seconds:.1f} s including start-up; "
          f"host: {res['uptime']}\n")  # fmt: skip
    (RESULTS / "pseudo_bow_check.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
