"""Atomic file writes: a crash or kill -9 never leaves a half-written output behind."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MiB = 2**20
# a failed write that leaves less than this free on its file system is reported as "disk full":
# writers such as torch.save report a full disk only as an opaque stream error
LOW_SPACE = 64 * MiB


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file in the same directory, fsync, then
    rename it over `path` (rename is atomic on POSIX within one file system).

    On any failure the temporary file is removed and `path` keeps its previous content; a
    failure on a (nearly) full file system is raised as `OSError(ENOSPC)` saying so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would keep outputs from the group
        os.replace(tmp, path)
    except Exception as e:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        free = free_bytes(path.parent)
        Path(tmp).unlink(missing_ok=True)
        if getattr(e, "errno", None) == errno.ENOSPC or free < LOW_SPACE:
            raise OSError(
                errno.ENOSPC,
                f"could not write {path}: its file system is full ({free / MiB:.0f} MiB free "
                f"after {written / MiB:.0f} MiB were written; the partial file was removed "
                f"and any previous {path.name} is intact). Free some space or write elsewhere "
                f"(for a training run: run.out_dir=...)",
            ) from e
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit: clean up, nothing to explain
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def free_bytes(directory: str | Path) -> int:
    """Free bytes on the file system that holds (or will hold) `directory`."""
    d = Path(directory).absolute()
    while not d.exists():  # the folder may not exist yet: ask its nearest existing parent
        d = d.parent
    return shutil.disk_usage(d).free


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
