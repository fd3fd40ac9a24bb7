"""Split caption shards (`visrep data build-captions`) by image (byte-identical images kept
once, so no held-out image is also a training image) into a training JSONL and a
held-out JSONL (never trained on), for `visrep eval retrieval --pairs`.

Run:   python benchmarks/split_caption_shards.py SHARD_DIR OUT_DIR --held-out 300 --seed 0
Writes OUT_DIR/img/KEY.png, OUT_DIR/train.jsonl, OUT_DIR/held_out.jsonl, OUT_DIR/split.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tarfile
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shards")
    ap.add_argument("out")
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unique-captions", action="store_true",
                    help="hold out only pairs whose caption text occurs once in the whole set")  # fmt: skip
    args = ap.parse_args()
    out = Path(args.out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    samples: dict[str, dict] = {}
    for tar in sorted(Path(args.shards).glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, _, ext = m.name.rpartition(".")
                key = f"{tar.stem}/{key}"
                samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    rows, seen, dup = [], set(), 0
    for key, s in sorted(samples.items()):
        if "png" not in s or "txt" not in s:
            continue
        digest = hashlib.md5(s["png"]).hexdigest()
        if digest in seen:  # byte-identical image (clip art repeated across categories)
            dup += 1
            continue
        seen.add(digest)
        name = key.replace("/", "__") + ".png"
        (out / "img" / name).write_bytes(s["png"])
        caption = s["txt"].decode().strip().splitlines()[0]
        rows.append({"image_path": f"img/{name}", "caption": caption, "source": key})
    random.Random(args.seed).shuffle(rows)
    if args.unique_captions:
        count = Counter(r["caption"] for r in rows)
        ok = [i for i, r in enumerate(rows) if count[r["caption"]] == 1][: args.held_out]
        chosen = set(ok)
        held = [rows[i] for i in ok]
        train = [r for i, r in enumerate(rows) if i not in chosen]
    else:
        held, train = rows[: args.held_out], rows[args.held_out :]
    for name, part in (("held_out", held), ("train", train)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    train_captions = {t["caption"] for t in train}
    report = {"pairs": len(rows), "duplicate_images_dropped": dup, "train": len(train),
              "held_out": len(held), "seed": args.seed, "unique_captions": args.unique_captions,
              "shards": args.shards,
              "held_out_captions_also_in_train": sum(r["caption"] in train_captions for r in held)}  # fmt: skip
    (out / "split.json").write_text(json.dumps(report, indent=1))
    print(report)


if __name__ == "__main__":
    main()
