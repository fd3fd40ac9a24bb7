"""TorchCodec as the optional video decoder (`data.video_backend=torchcodec`): the same frames
and frame rate as PyAV on lossless and lossy files, the clear errors, and a training run on a
built Moving Fashion-MNIST folder decoded through it."""

import json

import pytest
import torch
from conftest import requires_fmnist

from visrep import cli
from visrep.config import ConfigError, DataConfig
from visrep.data import video as video_module
from visrep.data.build_video import build_moving_fmnist
from visrep.data.video import check_video_backend, decode_video, write_video


def _torchcodec_or_skip() -> None:
    try:
        check_video_backend("torchcodec")
    except ImportError:
        pytest.skip("TorchCodec missing: pip install 'visrep[torchcodec]'")
    except RuntimeError as e:
        pytest.skip(f"TorchCodec cannot decode here: apt-get install ffmpeg ({e})")


def test_torchcodec_decodes_the_frames_pyav_decodes(tmp_path):
    _torchcodec_or_skip()
    frames = torch.zeros(10, 24, 32, dtype=torch.uint8)
    for k in range(10):
        frames[k] = 20 * k
    frames[:, 5:9, 3:20] = 255  # an edge, so a wrong colour conversion or crop would show
    write_video(tmp_path / "x.mkv", frames, codec="ffv1")  # Matroska: no frame count
    video, fps = decode_video(tmp_path / "x.mkv", backend="torchcodec")
    assert video.dtype == torch.uint8 and video.shape == (10, 24, 32, 3) and fps == 30.0
    assert torch.equal(video[..., 0], frames)  # lossless: every frame, exactly
    write_video(tmp_path / "x.mp4", frames)
    tc, tc_fps = decode_video(tmp_path / "x.mp4", short_side=12, backend="torchcodec")
    av, av_fps = decode_video(tmp_path / "x.mp4", short_side=12)
    assert tc.shape == av.shape == (10, 12, 16, 3) and tc_fps == av_fps
    assert (tc.int() - av.int()).abs().max() <= 1  # two FFmpeg builds' YUV -> RGB


def test_unknown_or_unusable_backends_say_what_to_do(monkeypatch):
    with pytest.raises(ConfigError, match="video_backend"):
        DataConfig(video_backend="decord")
    with pytest.raises(ValueError, match="video_backend"):
        decode_video("x.mp4", backend="decord")

    def no_ffmpeg(path):
        raise OSError("libavutil.so.58: cannot open shared object file")

    monkeypatch.setattr(video_module, "_decode_torchcodec", no_ffmpeg)
    check_video_backend.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install ffmpeg"):
            check_video_backend("torchcodec")
    finally:
        check_video_backend.cache_clear()


@requires_fmnist
def test_a_video_run_trains_on_a_folder_decoded_by_torchcodec(tmp_path):
    _torchcodec_or_skip()
    folder = tmp_path / "mfmnist"
    build_moving_fmnist(folder, n=16, n_val=4, frames=16, size=32, seed=0)
    run = tmp_path / "run"
    args = ["train", "mae_st_mfmnist", f"data.dataset={folder}", "data.video_backend=torchcodec",
            "data.frames=8", "data.img_size=32", "backbone.depth=1", "backbone.patch_size=8",
            "method.decoder_dim=16", "method.decoder_depth=1", "method.decoder_heads=2",
            "method.pred_t_dim=4", "optim.batch_size=4", "optim.epochs=1", "run.max_steps=2",
            "data.num_workers=0", "run.progress=false", "run.threads=1", "run.budget_minutes=0",
            "eval.final=false", f"run.out_dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    assert json.loads((run / "config.json").read_text())["data"]["video_backend"] == "torchcodec"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_steps"] == 2 and metrics["unreadable_images_skipped"] == 0
