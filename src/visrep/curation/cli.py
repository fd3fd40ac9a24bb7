"""`visrep curate build-metadata | match | balance` (MetaCLIP paper Sec. 3; docs/curation.md).

visrep curate build-metadata --out metadata.json --list my_ngrams.txt --list titles.txt
visrep curate match pool/ --metadata metadata.json --out matched/          # resumable
visrep curate balance matched/ --t 20000 --seed 0 --out curated/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visrep.curation.captions import MAX_KEY_CHARS, MAX_TEXT_CHARS


def add_curate_parser(sub: argparse._SubParsersAction) -> None:
    """Register `curate` and its three sub-commands on the top-level CLI."""
    c = sub.add_parser(
        "curate",
        help="MetaCLIP data curation: build-metadata | match | balance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = c.add_subparsers(dest="curate_command", required=True)
    b = steps.add_parser("build-metadata", help="entry list from WordNet + your lists")
    b.add_argument("--out", required=True, help="metadata file to write (JSON list)")
    b.add_argument("--wordnet-dir", default="/usr/share/wordnet", help="WordNet database folder")
    b.add_argument("--no-wordnet", action="store_true", help="leave WordNet out")
    b.add_argument("--no-numbers", action="store_true", help='leave "0".."99" out')
    b.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="FILE",
        help="entries, one per line (n-grams, titles, class names); repeatable",
    )
    m = steps.add_parser("match", help="match a caption pool, shard-parallel")
    m.add_argument("inputs", nargs="+", help="shard files or folders (.jsonl .csv .parquet .tar)")
    m.add_argument("--metadata", required=True)
    m.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    m.add_argument("--text-field", default="text", help="JSONL key / column of the caption")
    m.add_argument("--key-field", default=None, help="JSONL key / column of the sample id")
    m.add_argument("--text-ext", default="txt", help="caption member extension in tar shards")
    m.add_argument(
        "--max-key-chars",
        type=int,
        default=MAX_KEY_CHARS,
        metavar="N",
        help=f"skip and count a record whose key is longer (default {MAX_KEY_CHARS})",
    )
    m.add_argument(
        "--max-text-chars",
        type=int,
        default=MAX_TEXT_CHARS,
        metavar="N",
        help=f"skip and count a record whose caption is longer (default {MAX_TEXT_CHARS})",
    )
    m.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    m.add_argument("--matcher", choices=["ahocorasick", "naive"], default="ahocorasick")
    m.add_argument("--no-progress", action="store_true")
    a = steps.add_parser("balance", help="the t rule: keep a balanced subset")
    a.add_argument("match_dir", help="output folder of `visrep curate match`")
    a.add_argument("--out", required=True, help="folder for subset.tsv and the report")
    a.add_argument("--t", type=float, default=20_000, help="per-entry cap t (default 20000)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--no-progress", action="store_true")


def run_curate(args: argparse.Namespace, unknown: list[str] | None = None) -> int:
    """Run the `curate` sub-command parsed by `add_curate_parser`; returns the exit code."""
    if unknown:
        raise ValueError(f"unrecognized arguments for `curate {args.curate_command}`: {unknown}")
    if args.curate_command == "build-metadata":
        from visrep.curation.metadata import build_metadata, save_metadata

        entries, report = build_metadata(
            None if args.no_wordnet else args.wordnet_dir, args.list, not args.no_numbers
        )
        save_metadata(entries, args.out)
        print(json.dumps(report, indent=2))
        print(f"wrote {len(entries):,} entries to {args.out}")
        return 0
    if args.curate_command == "match":
        from visrep.curation.captions import CaptionFields
        from visrep.curation.pipeline import match_pool

        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        fields = CaptionFields(
            args.text_field, args.key_field, args.text_ext, args.max_key_chars, args.max_text_chars
        )
        summary = match_pool(
            args.inputs,
            args.metadata,
            args.out,
            fields,
            args.workers,
            args.matcher,
            progress=not args.no_progress,
        )
        print(json.dumps({k: v for k, v in summary.items() if k != "outputs"}, indent=2))
        if not summary["complete"]:
            print(f"{len(summary['shards_failed'])} shard(s) failed; fix them and re-run to resume")
            return 1
        print(f"wrote {Path(args.out) / 'entry_counts.npy'} and {Path(args.out) / 'shards'}/*.npz")
        return 0
    if args.curate_command == "balance":
        from visrep.curation.balance import balance_pool

        report = balance_pool(
            args.match_dir, args.out, t=args.t, seed=args.seed, progress=not args.no_progress
        )
        print((Path(args.out) / "report.md").read_text())
        print(f"kept {report['texts_kept']:,} texts: {report['subset']}")
        return 0
    raise AssertionError(args.curate_command)
