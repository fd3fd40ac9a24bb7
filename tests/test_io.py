"""Atomic writes and disk space: a failed write never damages what was there, and a full
disk is reported as such (torch.save says only 'iostream error')."""

import errno
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from torch import nn

import visrep.checkpoint as checkpoint
import visrep.io as vio
from visrep.checkpoint import checkpoint_bytes, save_checkpoint, space_warning

Usage = namedtuple("Usage", "total used free")


def _failing_writer(tmp: Path) -> None:
    tmp.write_bytes(b"x" * 1000)  # part of the new content, then the stream breaks
    raise RuntimeError("basic_ios::clear: iostream error")  # what torch.save raises on ENOSPC


def _with_free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(vio.shutil, "disk_usage", lambda p: Usage(10 * free + 1, 0, free))


def test_failed_write_on_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")
    _with_free(monkeypatch, vio.MiB)  # 1 MiB left
    with pytest.raises(OSError, match="file system is full") as info:
        vio.atomic_write(target, _failing_writer)
    assert info.value.errno == errno.ENOSPC
    assert "run.out_dir" in str(info.value) and "previous checkpoint.pt is intact" in str(
        info.value
    )
    assert isinstance(info.value.__cause__, RuntimeError)  # the original error stays visible
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_failed_write_with_space_left_raises_the_original_error(tmp_path, monkeypatch):
    _with_free(monkeypatch, 10 * 2**30)
    with pytest.raises(RuntimeError, match="iostream"):
        vio.atomic_write(tmp_path / "out.bin", _failing_writer)
    assert list(tmp_path.iterdir()) == []


def test_enospc_is_reported_as_full_disk_whatever_the_free_space_reading(tmp_path, monkeypatch):
    _with_free(monkeypatch, 10 * 2**30)  # e.g. a quota: plenty free on the device, none for us

    def quota(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="file system is full"):
        vio.atomic_write(tmp_path / "out.bin", quota)


def test_free_bytes_asks_the_nearest_existing_parent(tmp_path):
    assert vio.free_bytes(tmp_path / "not" / "yet" / "made") == vio.free_bytes(tmp_path) > 0


def test_checkpoint_size_estimate_bounds_the_real_file(tmp_path):
    model = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512), nn.Linear(512, 256))
    model[0].weight.requires_grad_(False)  # frozen: in the state dict, not in the optimizer
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path, {"model": model.state_dict(), "optimizer": opt.state_dict()})
    estimate = checkpoint_bytes(model)
    # float32 entries, and BatchNorm's num_batches_tracked is int64 (4 more bytes)
    state = sum(t.numel() * 4 for t in model.state_dict().values()) + 4
    trainable = sum(p.numel() * 4 for p in model.parameters()) - 256 * 512 * 4
    assert estimate == state + 2 * trainable
    assert 0.95 * estimate < path.stat().st_size < 1.05 * estimate  # AdamW: two slots, as assumed


def test_space_warning_only_when_a_checkpoint_would_not_fit(tmp_path, monkeypatch):
    model = nn.Linear(1024, 1024)  # 4 MiB of weights, 12 MiB with AdamW's moments
    assert space_warning(tmp_path / "run", model) is None  # this disk has room
    monkeypatch.setattr(checkpoint, "free_bytes", lambda d: 20 * vio.MiB)
    msg = space_warning(tmp_path / "run", model)
    assert msg is not None and "20 MiB free" in msg and "12 MiB" in msg and "run.out_dir" in msg
