"""Small helpers the benchmark scripts share: host load, CPU use, markdown tables.

The host is shared and noisy (another process on one of 2 cores cuts a 2-thread training
step 3-15x): every result records the load average and how many cores our own process
actually got (process CPU time / wall time), so a reader can tell a slow number from a busy
machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def uptime() -> str:
    """`uptime` output (time, up, users, load average)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def command_line() -> str:
    """The command that reproduces this run, from the repository root."""
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }


class CpuMeter:
    """Wall time and this process's CPU time (all threads, children excluded).

    `cores` = CPU seconds / wall seconds: ~2.0 means our 2 threads had the machine; less
    means other processes took cores away (each number measured during a busy period is
    then a lower bound).
    """

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds()
        self.load_before = os.getloadavg()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = _cpu_seconds() - self._cpu
        self.cores = self.cpu / max(self.wall, 1e-9)
        self.load_after = os.getloadavg()

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall, 1),
            "cpu_s": round(self.cpu, 1),
            "cores_used": round(self.cores, 2),
            "load_before": [round(x, 2) for x in self.load_before],
            "load_after": [round(x, 2) for x in self.load_after],
        }


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def host_note(h: dict[str, Any], label: str = "shared, 1 thread", what: str = "wall") -> str:
    """One sentence on the host of a measurement: `uptime` and the matmul probe before and
    after (keys `uptime_*`, `matmul_gflops_*`), then CpuMeter's wall time and cores used."""
    return (f"Host ({label}): before `{h['uptime_before']}`, matmul {h['matmul_gflops_before']} "
            f"GFLOP/s; after `{h['uptime_after']}`, {h['matmul_gflops_after']} GFLOP/s (≈ 210 "
            f"when quiet); {what} {h['wall_s']} s, cores used {h['cores_used']}.")  # fmt: skip


def write_json(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def busy_cores(interval: float = 3.0) -> float:
    """Cores kept busy by every process on the host over `interval` seconds (/proc/stat)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v[:8]), idle

    t0, i0 = read()
    time.sleep(interval)
    t1, i1 = read()
    total = max(t1 - t0, 1)
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / total)


def wait_for_quiet(max_wait_s: float = 1200, max_busy: float = 0.25, checks: int = 3) -> dict:
    """Block until the host is idle (other processes use < `max_busy` cores in `checks`
    consecutive 3-second samples) or `max_wait_s` passes. A 2-thread training step slows
    3-15x when another process holds a core (measured on a 2-core host), so a run that starts on a
    busy host measures the other process more than ours. Returns what happened."""
    start = time.perf_counter()
    quiet, samples = 0, []
    while True:
        b = busy_cores()
        samples.append(round(b, 2))
        quiet = quiet + 1 if b < max_busy else 0
        waited = time.perf_counter() - start
        if quiet >= checks or waited > max_wait_s:
            return {
                "waited_s": round(waited),
                "quiet": quiet >= checks,
                "last_busy_cores": samples[-checks:],
            }
        if len(samples) % 20 == 1:
            print(f"waiting for a quiet host: {b:.2f} cores busy ({waited:.0f} s)", flush=True)
        time.sleep(2)


def _proc_cpu_seconds(pid: int) -> float:
    """CPU seconds (all threads) of one process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_guarded(
    cmd: list[str],
    *,
    done_marker: str,
    max_others: float = 0.5,
    patience_s: float = 20.0,
    interval: float = 5.0,
) -> dict:
    """Run `cmd`, echoing its output, and watch the host until a line containing
    `done_marker` appears (the end of the timed part). If other processes keep more than
    `max_others` cores busy for `patience_s`, the child is stopped (SIGTERM, then SIGKILL)
    and {"interrupted": True} is returned so the caller can wait and retry. Otherwise
    returns {"interrupted": False, "others_cores_mean": ...} after the child exits
    (raises on a non-zero exit)."""
    import signal
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timed_done = threading.Event()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(line)
            sys.stdout.flush()
            if done_marker in line:
                timed_done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    others_samples: list[float] = []
    busy_since = None
    while proc.poll() is None and not timed_done.is_set():
        try:
            c0 = _proc_cpu_seconds(proc.pid)
            busy = busy_cores(interval)
            child = (_proc_cpu_seconds(proc.pid) - c0) / interval
        except (FileNotFoundError, ProcessLookupError):
            break
        others = max(busy - child, 0.0)
        others_samples.append(others)
        now = time.perf_counter()
        busy_since = (busy_since or now) if others > max_others else None
        if busy_since is not None and now - busy_since >= patience_s:
            print(f"other processes hold {others:.2f} cores: stopping this run to retry later",
                  flush=True)  # fmt: skip
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            return {"interrupted": True, "others_cores_samples": others_samples}
    rc = proc.wait()
    reader.join(timeout=5)
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)
    mean = sum(others_samples) / len(others_samples) if others_samples else 0.0
    return {"interrupted": False, "others_cores_mean": round(mean, 3),
            "others_cores_max": round(max(others_samples, default=0.0), 2)}  # fmt: skip


def parallel_map(fn: Any, jobs: list[tuple], workers: int) -> list[Any]:
    """`[fn(*args) for args in jobs]`, in `workers` spawned processes when `workers` > 1 (each
    should train on its own thread: `run.threads=1`); results in the order of `jobs`. `fn`
    must be a module-level function of a script importable by its path (spawn re-imports
    it), and its arguments and result picklable."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*args) for args in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        return list(ex.map(fn, *zip(*jobs, strict=True)))


def as_finished(fn: Any, jobs: list[tuple], workers: int) -> Iterator[Any]:
    """`fn(*args)` for args in `jobs`, yielded as each finishes: in order in this process when
    `workers` <= 1, else in `workers` spawned processes (one CUDA context each; `fn` as for
    `parallel_map`), so a caller can record every finished job before the others end."""
    if workers <= 1:
        yield from (fn(*args) for args in jobs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        for f in as_completed([ex.submit(fn, *args) for args in jobs]):
            yield f.result()


def fixed_step_config(cfg: Any, steps: int, batch: int, out_dir: str, **run: Any) -> Any:
    """`cfg` trained for exactly `steps` steps of `batch` images with its schedule compressed,
    not cut: one epoch over the first steps × batch training images (`data.limit`,
    `optim.epochs=1`), so warmup and cosine complete; no evaluation during or after
    training; `run` sets further `run.*` keys (threads, device, log_every)."""
    from visrep.config import replace

    return replace(cfg, **{
        "data.limit": steps * batch, "optim.batch_size": batch, "optim.epochs": 1,
        "eval.final": False, "eval.every_epochs": 0, "run.out_dir": str(out_dir),
        "run.progress": False, **{f"run.{k}": v for k, v in run.items()},
    })  # fmt: skip
