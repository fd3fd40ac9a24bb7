"""Bad inputs and faults through the real command line: what each one does (issue 15).

    .venv/bin/python benchmarks/bad_inputs.py            # -> results/bad_inputs.{md,json}
    .venv/bin/python benchmarks/bad_inputs.py --only lock --keep   # some probes; keep files

Every probe runs `python -m visrep.cli ...` in a subprocess (one torch thread) inside one
temporary folder: tiny `--smoke` runs on Fashion-MNIST (/usr/share/datasets/fashion-mnist),
image folders and shards built by the test suite's helpers (`tests/conftest.py`,
`tests/test_bad_inputs.py`). For each it records the exit code, the line that says what
happened, whether a Python traceback was printed, and whether the outcome is the expected
one (exit code, plus a check of what was written where it matters). The goal is zero
tracebacks and every outcome as expected: a bad input is refused with one line that says
what to do (exit 2), or skipped and counted (exit 0), and never corrupts a run.

The probes are the cases of issue 15's reliability audit: zero and negative sizes, unknown
keys and flags, divergence, corrupt and hostile files (decompression bomb, malicious pickle,
garbage and truncated tars), odd tables, run folders of two runs, a locked run folder,
resume corner cases, unwritable outputs and curation's field bounds. ~4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
from conftest import colour_folder  # noqa: E402
from host import command_line, md_table, uptime, write_json  # noqa: E402
from test_bad_inputs import _png, _shards, _truncate  # noqa: E402

from visrep.checkpoint import RunDirLock  # noqa: E402
from visrep.data.folder import MAX_PIXELS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TRACEBACK = "Traceback (most recent call last)"
SMOKE = ["--smoke", "eval.final=False", "eval.every_epochs=0", "run.threads=1"]
FOLDER = ["data.channels=0", "data.img_size=16", "data.limit=0", "optim.batch_size=4",
          "optim.epochs=1"]  # fmt: skip


@dataclass
class Probe:
    """One bad input: `args` of `visrep` ({T} = the temporary folder), the exit code a
    correct program gives, and optionally a check of the output (returns a problem or "")."""

    name: str
    what: str  # the input, in words
    args: list[str]
    expect: int
    check: Callable[[Path, str], str] | None = None
    say: str = ""  # regex of the output line that says what happened (else the error line)
    setup: Callable[[Path], None] | None = None
    hold_lock: str = ""  # a run folder this script locks while the probe runs
    result: dict = field(default_factory=dict)


class Evil:
    """A pickle that runs a shell command when loaded (a hostile checkpoint.pt)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def contains(*needles: str) -> Callable[[Path, str], str]:
    def check(t: Path, out: str) -> str:
        missing = [n for n in needles if n not in out]
        return f"output lacks {missing}" if missing else ""

    return check


def image_bytes(kind: str, seed: int) -> bytes:
    """An odd but valid image (16-bit, CMYK, palette), a bomb, or a corrupt/truncated file."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    if kind == "16bit":
        Image.fromarray(rng.integers(0, 65535, (20, 24), dtype=np.uint16)).save(buf, "PNG")
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG")
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(buf, "PNG")
    elif kind == "bomb":  # a small file that declares a huge image
        Image.new("1", (10_000, MAX_PIXELS // 10_000 + 1)).save(buf, "PNG")
    elif kind == "truncated":
        Image.fromarray(rgb).save(buf, "JPEG")
        return buf.getvalue()[: len(buf.getvalue()) // 2]
    elif kind == "corrupt":
        return b"this is not an image at all" * 10
    return buf.getvalue()


def build_inputs(t: Path) -> None:
    """Every file the probes read, built once."""
    for kind in ("corrupt", "truncated", "16bit", "bomb", "cmyk", "palette"):
        folder = colour_folder(t / f"img_{kind}", per_class=(8, 8, 8), labelled=False)
        for i in range(4):
            ext = "jpg" if kind in ("cmyk", "truncated") else "png"
            (folder / f"odd{i}.{ext}").write_bytes(image_bytes(kind, i))
    (t / "img_allbad").mkdir()
    for i in range(6):
        (t / "img_allbad" / f"{i}.png").write_bytes(image_bytes("corrupt", i))
    (t / "img_empty").mkdir()
    (t / "garbage.tar").write_bytes(b"not a tar file, honest" * 50)
    for name, keep in (("cut_big", 0.3), ("cut_small", 0.95)):
        _truncate(_shards(t / name, n=200, per=100) / "pairs-0001.tar", keep)
    _pair_tables(t)
    _curation_inputs(t)


def _pair_tables(t: Path) -> None:
    pairs = t / "pairs"
    pairs.mkdir()
    for i in range(12):
        (pairs / f"{i}.png").write_bytes(_png(i))
    good = [{"image_path": f"{i}.png", "caption": f"a picture number {i}"} for i in range(12)]
    bad = ["[1, 2]", '"just a string"', json.dumps({"image_path": "0.png", "caption": 7}),
           json.dumps({"image_path": 5, "caption": "x"})]  # fmt: skip
    lines = [json.dumps(g) for g in good] + bad
    (pairs / "odd_rows.jsonl").write_text("\n".join(lines) + "\n")
    (pairs / "notjson.jsonl").write_text(json.dumps(good[0]) + "\n{'image_path': oops\n")
    csv_rows = [f"{g['caption']},{g['image_path']}" for g in good]
    csv_rows.append("a picture that is not there,missing.png")
    (pairs / "reversed.csv").write_text("caption,image_path\n" + "\n".join(csv_rows) + "\n")


def _curation_inputs(t: Path) -> None:
    cur = t / "cur"
    cur.mkdir()
    with open(cur / "pool.jsonl", "w") as f:
        for i in range(2000):
            key = "k" * 100_000 if i == 3 else f"id{i}"
            f.write(json.dumps({"text": "a cat on a mat", "id": key}) + "\n")
    (cur / "meta.json").write_text(json.dumps(["cat", "mat", "dog"]))
    (cur / "bad").mkdir()
    shutil.copy(cur / "pool.jsonl", cur / "bad" / "ok.jsonl")
    (cur / "bad" / "junk.tar").write_bytes(b"garbage" * 100)
    (cur / "unfinished").mkdir()
    rows = ["[1]", '"a string"', json.dumps({"text": 5}), "{broken", json.dumps({"text": "a cat"})]
    (cur / "odd.jsonl").write_text("\n".join(rows) + "\n")


def build_runs(t: Path, jobs: int) -> None:
    """The finished runs the probes read: MAE, MaskFeat and CLIP smoke runs."""
    runs = [
        ["train", "mae_fmnist", *SMOKE, "optim.epochs=1", f"run.out_dir={t}/run"],
        ["train", "maskfeat_fmnist", *SMOKE, "run.max_steps=2", f"run.out_dir={t}/mf"],
        ["train", "clip_fmnist", *SMOKE, "run.max_steps=2", f"run.out_dir={t}/clip"],
    ]
    with ThreadPoolExecutor(jobs) as pool:
        for proc in pool.map(lambda a: visrep(a, t, timeout=300), runs):
            if proc.returncode != 0:
                raise RuntimeError(f"building a run failed:\n{proc.stderr[-3000:]}")


def copy_run(src: str, dst: str, **edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup: copy run `src` to `dst` (probes that change a run get their own copy)."""

    def setup(t: Path) -> None:
        shutil.copytree(t / src, t / dst)
        for fn in edit.values():
            fn(t / dst)

    return setup


def mixed_run(config_of: str, ckpt_of: str, dst: str) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        (t / dst).mkdir(exist_ok=True)
        shutil.copy(t / config_of / "config.json", t / dst)
        shutil.copy(t / ckpt_of / "checkpoint.pt", t / dst)

    return setup


def _evil_checkpoint(run: Path) -> None:
    import torch

    torch.save({"model": Evil(run.parent / "pwned"), "step": 0}, run / "checkpoint.pt")


def _half_log_line(run: Path) -> None:
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 99, "train/lo')


def _debris(run: Path) -> None:
    (run / ".checkpoint.pt.k9x2.tmp").write_bytes(b"half a checkpoint")


def _no_debris(t: Path, out: str) -> str:
    left = list((t / "debris").glob(".*.tmp"))
    return f"left {left[0].name}" if left else ""


def _no_pwned(t: Path, out: str) -> str:
    return "the pickle's payload ran" if (t / "pwned").exists() else ""


def _small_curation(t: Path, out: str) -> str:
    size = sum(p.stat().st_size for p in (t / "cur_out").rglob("*") if p.is_file())
    problem = "" if size < 1_000_000 else f"output is {size:,} bytes"
    return problem or contains('"too_long_records_skipped": 1')(t, out)


def _all_finite(run: str) -> Callable[[Path, str], str]:
    def check(t: Path, out: str) -> str:
        import torch

        path = t / run / "checkpoint.pt"
        if not path.exists():
            return ""
        state = torch.load(path, weights_only=True)["model"]
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        return f"checkpoint holds non-finite {bad[:3]}" if bad else ""

    return check


TRAIN = ["train", "mae_fmnist", *SMOKE]


def probes() -> list[Probe]:
    """Every bad input, by where it enters: config and flags, data, run folders, evaluation
    and curation."""
    return config_probes() + data_probes() + run_probes() + eval_probes()


def config_probes() -> list[Probe]:
    sizes = [("epochs 0", "optim.epochs=0"), ("epochs -3", "optim.epochs=-3"),
             ("batch -1", "optim.batch_size=-1"), ("batch 0", "optim.batch_size=0"),
             ("log_every 0", "run.log_every=0"), ("accum 0", "optim.accum_steps=0"),
             ("holdout 1.5", "eval.holdout=1.5"), ("channels 2", "data.channels=2"),
             ("img_size 30, patch 4", "data.img_size=30")]  # fmt: skip
    out = [Probe(n, f"size {o}", [*TRAIN, o, f"run.out_dir={{T}}/s{i}"], 2)
           for i, (n, o) in enumerate(sizes)]  # fmt: skip
    return out + [
        Probe("unknown key", "optim.lrr=0.1", [*TRAIN, "optim.lrr=0.1", "run.out_dir={T}/k"], 2),
        Probe("wrong type", "optim.epochs=abc",
              [*TRAIN, "optim.epochs=abc", "run.out_dir={T}/ty"], 2, contains("optim.epochs")),
        Probe("mistyped flag (train)", "--smoek", ["train", "mae_fmnist", "--smoek"], 2),
        Probe("mistyped flag (export)", "--fromat",
              ["export", "--ckpt", "{T}/run", "--out", "{T}/x", "--fromat", "timm"], 2),
        Probe("unknown protocol", "eval knnn", ["eval", "knnn", "--ckpt", "{T}/run"], 2),
        Probe("unknown recipe", "mae_fmnsit", ["train", "mae_fmnsit"], 2),
        Probe("unknown device", "run.device=gpu",
              [*TRAIN, "run.device=gpu", "run.out_dir={T}/dev"], 2),
        Probe("run.out_dir is a file", "run.out_dir names a file",
              [*TRAIN, "run.out_dir={T}/garbage.tar"], 2, contains("choose another")),
        Probe("diverging run", "optim.blr=1e6 (diverges before its first checkpoint)",
              [*TRAIN, "optim.blr=1e6", "run.log_every=100", "run.out_dir={T}/nan"], 2,
              contains("nothing was saved")),
        Probe("init_from another method", "run.init_from= a MaskFeat run",
              [*TRAIN, "run.init_from={T}/mf", "run.out_dir={T}/init"], 2,
              contains("'maskfeat' run")),
    ]  # fmt: skip


def data_probes() -> list[Probe]:
    folder = [*TRAIN, *FOLDER]
    out = [Probe(f"{kind} images", f"24 images + 4 {kind} in a folder",
                 [*folder, f"data.dataset={{T}}/img_{kind}", f"run.out_dir={{T}}/r_{kind}"], 0,
                 contains(f'"unreadable_images_skipped": {skipped}'),
                 say="unreadable_images_skipped")
           for kind, skipped in (("corrupt", 4), ("truncated", 4), ("bomb", 4), ("16bit", 0),
                                 ("cmyk", 0), ("palette", 0))]  # fmt: skip
    clip = ["train", "clip_fmnist", *SMOKE, "data.channels=3", "optim.batch_size=4",
            "optim.epochs=1"]  # fmt: skip
    return out + [
        Probe("only unreadable images", "6 corrupt files",
              [*folder, "data.dataset={T}/img_allbad", "run.out_dir={T}/r_allbad"], 2),
        Probe("empty folder", "no image", [*folder, "data.dataset={T}/img_empty",
                                           "run.out_dir={T}/r_empty"], 2),
        Probe("missing dataset", "a path that does not exist",
              [*folder, "data.dataset={T}/nowhere", "run.out_dir={T}/r_nowhere"], 2),
        Probe("garbage .tar", "a text file named .tar",
              [*folder, "data.dataset={T}/garbage.tar", "run.out_dir={T}/r_gtar"], 2),
        Probe("truncated shard (70% cut)", "2 shards of 100, one cut to 30%",
              [*folder, "data.dataset={T}/cut_big", "run.out_dir={T}/r_cutb"], 2,
              contains("truncated or damaged shard")),
        Probe("truncated shard (5% cut)", "2 shards of 100, one cut to 95%",
              [*folder, "data.dataset={T}/cut_small", "run.out_dir={T}/r_cuts"], 0,
              contains("lost to a truncated"), say="lost to a truncated"),
        Probe("JSONL rows not pairs", "12 pairs + a list, a string, a numeric caption and path",
              [*clip, "data.dataset={T}/pairs/odd_rows.jsonl", "run.out_dir={T}/p_odd"], 0,
              contains('"unreadable_images_skipped": 4'), say="skipped"),
        Probe("JSONL line not JSON", "a broken line",
              [*clip, "data.dataset={T}/pairs/notjson.jsonl", "run.out_dir={T}/p_nj"], 2,
              contains("notjson.jsonl:2")),
        Probe("CSV header reversed", "caption,image_path; one image missing",
              [*clip, "data.dataset={T}/pairs/reversed.csv", "run.out_dir={T}/p_csv"], 0,
              contains('"unreadable_images_skipped": 1'), say="skipped"),
        Probe("shard size 0", "--shard-size 0",
              ["data", "build-captions", "--out", "{T}/caps", "--shard-size", "0"], 2),
    ]  # fmt: skip


def run_probes() -> list[Probe]:
    out = [Probe(f"config/checkpoint of 2 runs ({cmd})", "MAE config.json + MaskFeat checkpoint.pt",
                 args, 2, contains("come from different runs"),
                 setup=mixed_run("run", "mf", "mix"))
           for cmd, args in (("eval", ["eval", "knn", "--ckpt", "{T}/mix"]),
                             ("export", ["export", "--ckpt", "{T}/mix", "--out", "{T}/mix_x"]),
                             ("resume", ["train", "--resume", "{T}/mix"]))]  # fmt: skip
    return out + [
        Probe("second writer", "a run folder locked by another process",
              [*TRAIN, "run.out_dir={T}/locked"], 2, contains("in use by pid"),
              hold_lock="locked"),
        Probe("resume a finished run", "--resume of a run at its last step",
              ["train", "--resume", "{T}/done"], 0, contains("nothing left to train"),
              say="nothing left", setup=copy_run("run", "done")),
        Probe("resume + model override", "method.mask_ratio=0.5",
              ["train", "--resume", "{T}/run", "method.mask_ratio=0.5"], 2),
        Probe("resume + recipe", "a recipe beside --resume",
              ["train", "mae_fmnist", "--resume", "{T}/run"], 2),
        Probe("resume that diverges", "--resume optim.epochs=3 optim.blr=1e9",
              ["train", "--resume", "{T}/div", "optim.epochs=3", "optim.blr=1e9"], 2,
              _all_finite("div"), say="keeps its checkpoint", setup=copy_run("run", "div")),
        Probe("resume, half log line", "a kill cut log.jsonl's last line",
              ["train", "--resume", "{T}/halflog"], 0, say="nothing left",
              setup=copy_run("run", "halflog", e=_half_log_line)),
        Probe("resume, debris of a killed write", "a .checkpoint.pt.*.tmp left by kill -9",
              ["train", "--resume", "{T}/debris"], 0, _no_debris, say="nothing left",
              setup=copy_run("run", "debris", e=_debris)),
        Probe("resume missing run", "a folder without checkpoint",
              ["train", "--resume", "{T}/norun"], 2, setup=lambda t: (t / "norun").mkdir()),
        Probe("malicious pickle", "checkpoint.pt whose pickle runs a shell command",
              ["eval", "knn", "--ckpt", "{T}/evil"], 2, _no_pwned,
              setup=copy_run("run", "evil", e=_evil_checkpoint)),
        Probe("truncated checkpoint", "checkpoint.pt cut in half",
              ["export", "--ckpt", "{T}/cutckpt", "--out", "{T}/cut_export"], 2,
              setup=copy_run("run", "cutckpt", e=lambda r: _truncate(r / "checkpoint.pt", 0.5))),
        Probe("config.json not JSON", "config.json holds garbage",
              ["eval", "knn", "--ckpt", "{T}/badcfg"], 2, contains("config.json"),
              setup=copy_run("run", "badcfg",
                             e=lambda r: (r / "config.json").write_text("{not json"))),
        Probe("config.json of wrong shape", 'config.json {"method_name": "mae", "optim": 5}',
              ["export", "--ckpt", "{T}/shapecfg", "--out", "{T}/shape_x"], 2,
              contains("config.json"), setup=copy_run("run", "shapecfg", e=lambda r: (
                  r / "config.json").write_text('{"method_name": "mae", "optim": 5}'))),
        Probe("eval of a missing run", "--ckpt names nothing",
              ["eval", "knn", "--ckpt", "{T}/nothing"], 2),
        Probe("export onto a folder", "--out holds files, no --force",
              ["export", "--ckpt", "{T}/run", "--out", "{T}/pairs"], 2, contains("--force")),
        Probe("export onto a file", "--out names a file, with --force",
              ["export", "--ckpt", "{T}/run", "--out", "{T}/garbage.tar", "--force"], 2,
              lambda t, out: "" if (t / "garbage.tar").is_file() else "the file was deleted"),
        Probe("open_clip export of MAE", "--format open_clip of an image-only run",
              ["export", "--ckpt", "{T}/run", "--out", "{T}/oc", "--format", "open_clip"], 2),
    ]  # fmt: skip


def eval_probes() -> list[Probe]:
    ret = ["eval", "retrieval", "--ckpt", "{T}/clip", "--pairs"]
    return [
        Probe("eval --out unwritable", "--out under a regular file",
              ["eval", "knn", "--ckpt", "{T}/run", "--out", "{T}/garbage.tar/m.json"], 2,
              contains('"knn_top1"', "the metrics are printed above")),
        Probe("eval knn_k 0", "eval.knn_k=0", ["eval", "knn", "--ckpt", "{T}/run",
                                               "eval.knn_k=0"], 2),
        Probe("retrieval, 70% cut shard", "held-out pairs, one shard cut to 30%",
              [*ret, "{T}/cut_big", "--out", "{T}/ret_b.json"], 2,
              contains("truncated or damaged shard")),
        Probe("retrieval, 5% cut shard", "held-out pairs, one shard cut to 95%",
              [*ret, "{T}/cut_small", "--out", "{T}/ret_s.json"], 0,
              contains('"retrieval_lost"', "lost to a"), say="lost to a truncated"),
        Probe("retrieval, JSONL rows not pairs", "lists, strings, numbers",
              [*ret, "{T}/pairs/odd_rows.jsonl", "--out", "{T}/ret_j.json"], 0,
              contains('"retrieval_skipped": 1'), say="retrieval_skipped"),
        Probe("retrieval of an image-only run", "--ckpt of an MAE run",
              ["eval", "retrieval", "--ckpt", "{T}/run", "--pairs", "{T}/cut_small"], 2),
        Probe("curation 100k-char key", "one key of 100,000 characters in 2,000 rows",
              ["curate", "match", "{T}/cur/pool.jsonl", "--metadata", "{T}/cur/meta.json",
               "--out", "{T}/cur_out", "--key-field", "id", "--no-progress", "--workers", "1"],
              0, _small_curation, say="too_long"),
        Probe("curation rows not objects", "a list, a string, a numeric text, broken JSON",
              ["curate", "match", "{T}/cur/odd.jsonl", "--metadata", "{T}/cur/meta.json",
               "--out", "{T}/cur_odd", "--no-progress", "--workers", "1"], 0,
              contains('"malformed_records_skipped": 4'), say="malformed"),
        Probe("curation garbage .tar", "a garbage tar among the shards",
              ["curate", "match", "{T}/cur/bad", "--metadata", "{T}/cur/meta.json",
               "--out", "{T}/cur_bad", "--no-progress", "--workers", "1"], 1,
              say="shard.* failed"),
        Probe("curation balance, no match", "balance of an empty folder",
              ["curate", "balance", "{T}/cur/unfinished", "--out", "{T}/cur_bal"], 2),
        Probe("curation --max-key-chars 0", "a bound below 1",
              ["curate", "match", "{T}/cur/odd.jsonl", "--metadata", "{T}/cur/meta.json",
               "--out", "{T}/cur_zero", "--max-key-chars", "0"], 2),
    ]  # fmt: skip


def visrep(args: list[str], t: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "visrep.cli", *args], cwd=t, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def said(out: str, pattern: str) -> str:
    """The line that says what happened: the probe's pattern, else the error line, else the
    last line; without the log's time stamp."""
    lines = [re.sub(r"^\d\d:\d\d:\d\d visrep: ", "", x).strip() for x in out.splitlines()]
    lines = [x for x in lines if x]
    for pat in ([pattern] if pattern else []) + [r"error", r"Error"]:
        hit = next((x for x in lines if re.search(pat, x)), None)
        if hit:
            return hit
    return lines[-1] if lines else ""


def run_probe(p: Probe, t: Path) -> dict:
    args = [a.replace("{T}", str(t)) for a in p.args]
    if p.setup:
        p.setup(t)
    lock = RunDirLock(t / p.hold_lock) if p.hold_lock else nullcontext()
    start = time.perf_counter()
    with lock:
        try:
            proc = visrep(args, t)
            code, output = proc.returncode, proc.stderr + "\n" + proc.stdout
        except subprocess.TimeoutExpired as e:
            code, output = "timeout", f"{e.stderr or ''}\n{e.stdout or ''}"
    problem = "" if code == p.expect else f"exit {code}, expected {p.expect}"
    traceback = TRACEBACK in output
    problem = (
        problem or ("a traceback" if traceback else "") or (p.check(t, output) if p.check else "")
    )
    shown = " ".join(a.replace(str(t), "$T") for a in args)
    return {"probe": p.name, "input": p.what, "command": f"visrep {shown}", "expect": p.expect,
            "exit": code, "traceback": traceback,
            "said": said(output, p.say).replace(str(t), "$T")[:220],
            "ok": not problem, "problem": problem,
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="probes run at once (one thread each)")
    ap.add_argument("--only", default="", help="run the probes whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--out", default=str(RESULTS / "bad_inputs"))
    args = ap.parse_args()
    t = Path(tempfile.mkdtemp(prefix="visrep-bad-inputs-"))
    start, load_before = time.perf_counter(), uptime()
    try:
        build_inputs(t)
        build_runs(t, args.jobs)
        todo = [p for p in probes() if args.only in p.name]
        locking = [p for p in todo if p.hold_lock]  # the lock is held by this process
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda p: run_probe(p, t), [p for p in todo if not p.hold_lock]))
        rows += [run_probe(p, t) for p in locking]
    finally:
        if args.keep:
            print(f"kept {t}")
        else:
            shutil.rmtree(t, ignore_errors=True)
    report(rows, args.out, time.perf_counter() - start, load_before)


def report(rows: list[dict], out: str, seconds: float, load_before: str) -> None:
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    table = md_table(
        ["#", "probe", "input", "command", "expect", "exit", "traceback", "what it said", "ok"],
        [[i + 1, r["probe"], cell(r["input"]), f"`{cell(r['command'])}`", r["expect"], r["exit"],
          "yes" if r["traceback"] else "no", cell(r["said"]),
          "yes" if r["ok"] else f"**no**: {cell(r['problem'])}"] for i, r in enumerate(rows)],
    )  # fmt: skip
    n_tb = sum(r["traceback"] for r in rows)
    n_bad = sum(not r["ok"] for r in rows)
    text = (
        f"# Bad inputs and faults through the CLI\n\n`{command_line()}` — {len(rows)} probes in "
        f"{seconds:.0f} s; **{n_tb} raw tracebacks, {n_bad} outcomes not as expected**. `$T` is "
        "the script's temporary folder; the inputs are built by `benchmarks/bad_inputs.py` "
        "(`build_inputs`, `build_runs`, the probes' `setup`). Expected: 2 = refused with one "
        "line, 0 = runs (bad items skipped and counted), 1 = the bad shard fails alone.\n\n"
        f"Host load before: {load_before}\n\n{table}\n"
    )
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".md").write_text(text)
    write_json({"command": command_line(), "seconds": round(seconds), "tracebacks": n_tb,
                "not_as_expected": n_bad, "probes": rows}, out + ".json")  # fmt: skip


if __name__ == "__main__":
    main()
