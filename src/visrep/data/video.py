"""Video decoding, temporal clip sampling and clip transforms (after facebookresearch/SlowFast `datasets/decoder.py`, `datasets/transform.py`).

Decoding goes through PyAV (`av`, which bundles FFmpeg; torchvision's video API is gone from
the pinned torchvision) or, with `data.video_backend=torchcodec`, through TorchCodec (the
PyTorch project's decoder; pip install torchcodec, plus FFmpeg's shared libraries on the
system, e.g. `apt-get install ffmpeg`): `decode_video(path) -> uint8 [F, H, W, 3]` plus the
stream's frame rate. Everything after decoding works on tensors and is backend-independent.

Clip sampling follows the torchvision path of SlowFast / MAE-ST (SlowFast
`datasets/decoder.py` `get_start_end_idx`, `temporal_sampling`; mae_st `util/decoder/decoder.py`):
a window of W = max(1, τ·T·fps/30) source frames starts at s ~ U(0, max(V − W, 0)) in
training, or at evenly spread positions for multi-view testing; its T frame indices are
`torch.linspace(s, s + W − 1, T)` in float32, clamped to [0, V − 1] and truncated.

Spatial transforms (SlowFast `datasets/transform.py`, mae_st `util/decoder/transform.py`)
share one set of parameters across the frames of a clip: random resized crop (10 tries,
then a centre crop clamped to the aspect range), horizontal flip, uniform test crops,
short-side scaling; for fine-tuning, RandAugment and RandomErasing of clips, one draw per
clip (`visrep.data.clip_augment`). Every random draw takes an explicit `random.Random` (the
official code draws from Python's `random` and numpy), so a test can fix it.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import random
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.data.clip_augment import ClipAugment

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
LIST_EXTENSIONS = (".csv", ".jsonl", ".txt")
TARGET_FPS = 30.0  # SlowFast / MAE-ST sample clips at a target of 30 fps
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
RRC_RATIO = (0.75, 1.3333)  # MAE-ST / SlowFast relative aspect range


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a core dependency
        raise ImportError("video data needs PyAV: pip install av") from e
    return av


# --- decoding and writing ---------------------------------------------------------------


VIDEO_BACKENDS = ("pyav", "torchcodec")


def decode_video(
    path: str | Path, short_side: int = 0, backend: str = "pyav"
) -> tuple[Tensor, float | None]:
    """All frames of the first video stream: (uint8 [F, H, W, 3] RGB, fps or None).

    Decodes every frame (containers such as ffv1-in-Matroska report no frame count, so
    metadata is never trusted). `short_side` > 0 resizes the short side to it
    (bilinear, align_corners False; the long side ⌊long/short·size⌋), as SlowFast's decoder
    does at `TRAIN_JITTER_SCALES[0]`. `backend`: "pyav" or "torchcodec" (module docstring).
    Raises on anything unreadable or frameless."""
    if backend == "torchcodec":
        video, fps = _decode_torchcodec(path)
    elif backend == "pyav":
        video, fps = _decode_pyav(path)
    else:
        raise ValueError(f"data.video_backend must be one of {VIDEO_BACKENDS}, got {backend!r}")
    if short_side:
        video = short_side_scale(video.permute(3, 0, 1, 2).float(), short_side)
        video = video.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
    return video.contiguous(), fps


def _decode_pyav(path: str | Path) -> tuple[Tensor, float | None]:
    av = _av()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: no decodable frame")
    return torch.stack(frames), fps  # [F, H, W, 3]


def _decode_torchcodec(path: str | Path) -> tuple[Tensor, float | None]:
    """TorchCodec's `VideoDecoder` in "exact" seek mode (it scans the file, so a container
    without a frame count, ffv1 in Matroska, still gives every frame)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as e:
        raise ImportError("data.video_backend=torchcodec needs TorchCodec: pip install "
                          "torchcodec (or use data.video_backend=pyav)") from e  # fmt: skip
    decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact")
    if len(decoder) == 0:
        raise ValueError(f"{path}: no decodable frame")
    # the container's declared rate, as PyAV's `average_rate` (the scanned average of a
    # 10-frame Matroska file is 30.03, not 30)
    fps = decoder.metadata.average_fps_from_header or decoder.metadata.average_fps
    return decoder.get_frames_in_range(0, len(decoder)).data, float(fps) if fps else None


@functools.cache
def check_video_backend(backend: str) -> None:
    """Raise one clear error when `backend` cannot decode here (checked once per process, on
    a 2-frame mp4 written with PyAV), so that a missing library is not mistaken for a folder
    of unreadable videos."""
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"data.video_backend must be one of {VIDEO_BACKENDS}, got {backend!r}")
    if backend == "pyav":
        return
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.mp4"
        write_video(probe, torch.zeros(2, 16, 16, dtype=torch.uint8))
        try:
            decode_video(probe, backend=backend)
        except ImportError:
            raise
        except Exception as e:  # TorchCodec loads FFmpeg's libraries at the first decode
            raise RuntimeError(
                f"data.video_backend={backend} cannot decode on this machine ({type(e).__name__}:"
                f" {str(e).splitlines()[0][:200]}): TorchCodec needs FFmpeg's shared libraries "
                "(Debian/Ubuntu: apt-get install ffmpeg), or use "
                "data.video_backend=pyav"
            ) from e


def write_video(
    path: str | Path, frames: Tensor, fps: int = 30, codec: str = "libx264", crf: int = 0
) -> None:
    """Encode uint8 frames [F, H, W] (gray) or [F, H, W, 3] (RGB) to a file with PyAV.

    libx264 in mp4 by default, `crf` 0 (lossless luma: gray frames decode back exactly up to
    the RGB/YUV conversion); "ffv1" in .mkv is bit-exact. Single-threaded, so the same frames
    always give the same bytes."""
    av = _av()
    frames = torch.as_tensor(frames)
    if frames.ndim == 3:
        frames = frames.unsqueeze(-1).expand(-1, -1, -1, 3)
    f, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        options = {"crf": str(crf), "preset": "veryfast"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = w, h
        # 4:4:4 for lossless x264, RGB for ffv1, the widely decodable 4:2:0 otherwise
        stream.pix_fmt = {"libx264": "yuv444p", "ffv1": "bgr0"}.get(codec, "yuv420p")
        stream.thread_count = 1
        for frame in frames.contiguous().numpy():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --- finding videos -----------------------------------------------------------------------


def is_video_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def is_video_list(path: str | Path) -> bool:
    return str(path).lower().endswith(LIST_EXTENSIONS) and Path(path).is_file()


def scan_videos(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Videos below a folder, labelled by class sub-folder when every video lies in one
    (as `visrep.data.folder.scan_folder` does for images), else unlabeled (-1)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist or is not a directory")
    paths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        paths += [Path(dirpath, f) for f in filenames if is_video_file(f)]
    paths.sort()
    if not paths:
        raise ValueError(f"no videos found in {root} (looked recursively for files ending in "
                         f"{', '.join(VIDEO_EXTENSIONS)})")  # fmt: skip
    tops = [p.relative_to(root).parts for p in paths]
    if not all(len(t) > 1 for t in tops):
        return paths, [-1] * len(paths), []
    classes = sorted({t[0] for t in tops})
    return paths, [classes.index(t[0]) for t in tops], classes


def read_video_list(path: str | Path, label: str = "") -> tuple[list[Path], list[int], list[str]]:
    """A list of videos: CSV with a header naming a `path` column (labels from `label`, else a
    `label` or `class` column), SlowFast-style text (`path label` per line, space separated),
    or JSONL ({"path": ..., "label": ...}). Relative paths are relative to the list's folder.
    Integer labels are kept; other labels are indexed in sorted order."""
    path = Path(path)
    base, rows = path.parent, []
    text = path.read_text()
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif path.suffix.lower() == ".csv" and text.split("\n", 1)[0].split(",")[0].strip() == "path":
        rows = list(csv.DictReader(text.splitlines()))
    else:  # SlowFast: "path label" (space or comma separated), no header
        for line in text.splitlines():
            parts = line.replace(",", " ").split()
            if parts:
                rows.append({"path": parts[0], "label": parts[1] if len(parts) > 1 else ""})
    if not rows:
        raise ValueError(f"{path} lists no videos")
    key = label or next((k for k in ("label", "class") if k in rows[0]), "")
    raw = [str(r.get(key, "")) if key else "" for r in rows]
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else base / r["path"] for r in rows]
    if all(v == "" for v in raw):
        return paths, [-1] * len(paths), []
    if all(v.lstrip("-").isdigit() for v in raw):
        labels = [int(v) for v in raw]
        return paths, labels, [str(c) for c in range(max(labels) + 1)]
    classes = sorted(set(raw))
    return paths, [classes.index(v) for v in raw], classes


def find_videos(source: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """A folder (class sub-folders optional) or a CSV / JSONL / text list of videos."""
    return read_video_list(source) if is_video_list(source) else scan_videos(source)


# --- temporal sampling ------------------------------------------------------------


def clip_window(frames: int, stride: int, fps: float | None, target_fps: float = TARGET_FPS):
    """W = max(1, τ·T·fps/target_fps) source frames (synthetic videos: fps = target_fps)."""
    fps = fps or target_fps
    return max(1.0, stride * frames * fps / target_fps)


def clip_start(
    num_frames: int,
    window: float,
    *,
    view: int = -1,
    num_views: int = 1,
    offset: bool = False,
    rng: random.Random | None = None,
) -> float:
    """Start of a clip in a video of V = `num_frames` frames. Training (`view` = -1):
    s ~ U(0, max(V − W, 0)) from `rng` (Python `random.uniform`, as the official code).
    Testing, view i of N: s = max(V − W, 0)·i/N, or with `offset` (SlowFast
    USE_OFFSET_SAMPLING) i·⌊max(V − W, 0)/(N − 1)⌋ (⌊…/2⌋ for N = 1)."""
    delta = max(num_frames - window, 0)
    if view < 0:
        return (rng or random).uniform(0, delta)
    if not offset:
        return delta * view / num_views
    if num_views == 1:
        return float(math.floor(delta / 2))
    return float(view * math.floor(delta / (num_views - 1)))


def clip_indices(num_frames: int, start: float, window: float, frames: int) -> Tensor:
    """T frame indices: linspace(s, s + W − 1, T) in float32, clamped to [0, V − 1], truncated."""
    idx = torch.linspace(start, start + window - 1, frames, dtype=torch.float32)
    return idx.clamp(0, num_frames - 1).long()


def rho_clip_starts(
    num_frames: int,
    window: float,
    rho: int,
    rng: random.Random | None = None,
    *,
    min_gap: float = -math.inf,
    max_gap: float = math.inf,
    order: list[int] | None = None,
    retries: int = 100,
) -> list[float]:
    """Starts of ρ training clips of one video, in the order the model gets them ("A
    Large-Scale Study on Unsupervised Spatiotemporal Representation Learning", Feichtenhofer
    et al., CVPR 2021, Sec. 3; SlowFast `slowfast/datasets/decoder.py`
    `get_multiple_start_end_idx` and `decode`).

    Clips are drawn one after another, s ~ U(0, max(V − W, 0)) from `rng`; after the first,
    the sorted set's gaps g = start_next − end_prev (end = start + W − 1) must lie in
    [min_gap, max_gap] (default: anything, overlaps allowed), else the clip is redrawn, up to
    `retries` times (the last try is kept); the whole draw is repeated up to `retries` times
    keeping the least-violating set. The clips come out in temporal order and are then
    permuted (`order`, or a shuffle drawn from `rng`): the official decoder feeds the
    model the ρ clips in random temporal order."""
    rng = rng or random.Random()
    if order is None:
        order = list(range(rho))
        rng.shuffle(order)
    if sorted(order) != list(range(rho)):
        raise ValueError(f"order must be a permutation of range({rho}), got {order}")

    def violation(starts: list[float]) -> float:
        s = sorted(starts)
        gaps = [b - (a + window - 1) for a, b in zip(s[:-1], s[1:])]
        return sum(min_gap - g for g in gaps if g < min_gap) + sum(
            g - max_gap for g in gaps if g > max_gap
        )

    best, best_bad = None, math.inf
    for _ in range(retries):
        starts: list[float] = []
        for _ in range(rho):
            for attempt in range(retries):
                s = clip_start(num_frames, window, rng=rng)
                if not starts or violation(starts + [s]) == 0 or attempt == retries - 1:
                    starts.append(s)
                    break
        bad = violation(starts)
        if bad < best_bad:
            best, best_bad = sorted(starts), bad
        if bad == 0:
            break
    return [best[i] for i in order]


# --- spatial transforms on (C, T, H, W) float clips --------------------------------


def short_side_scale(clip: Tensor, size: int) -> Tensor:
    """Short side to `size` (long side ⌊long/short·size⌋), bilinear, align_corners False;
    a no-op when the short side already equals `size`."""
    _, _, h, w = clip.shape
    if min(h, w) == size:
        return clip
    new = (size, math.floor(w / h * size)) if h <= w else (math.floor(h / w * size), size)
    out = F.interpolate(clip.transpose(0, 1), size=new, mode="bilinear", align_corners=False)
    return out.transpose(0, 1)


def rrc_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = RRC_RATIO,
    rng: random.Random | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of SlowFast's `_get_param_spatial_crop`: up to 10 tries of
    area = U(scale)·H·W, aspect = exp(U(log r0, log r1)); accept if it fits, offsets
    randint inclusive; else a centre crop clamped to the aspect range."""
    rng = rng or random
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(clip: Tensor, box: tuple[int, int, int, int], size: int) -> Tensor:
    """Crop (top, left, h, w) of every frame and resize to size × size (bilinear)."""
    i, j, h, w = box
    crop = clip[:, :, i : i + h, j : j + w]
    if (h, w) == (size, size):
        return crop
    out = F.interpolate(crop.transpose(0, 1), size=(size, size), mode="bilinear",
                        align_corners=False)  # fmt: skip
    return out.transpose(0, 1)


def uniform_crop(clip: Tensor, size: int, spatial_index: int = 1) -> Tensor:
    """Test crop (SlowFast `uniform_crop`): centre offsets ⌈(H − size)/2⌉, ⌈(W − size)/2⌉;
    index 0 / 2 moves the offset along the long side to 0 / (long − size)."""
    _, _, h, w = clip.shape
    y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if spatial_index != 1:
        if h > w:
            y = 0 if spatial_index == 0 else h - size
        else:
            x = 0 if spatial_index == 0 else w - size
    return clip[:, :, y : y + size, x : x + size]


def random_crop(clip: Tensor, size: int, rng: random.Random) -> Tensor:
    """SlowFast `random_crop` of every frame: offsets y then x uniform in [0, H − size) and
    [0, W − size) (numpy's randint excludes the end; 0 where the side equals `size`)."""
    _, _, h, w = clip.shape
    y = rng.randrange(h - size) if h > size else 0
    x = rng.randrange(w - size) if w > size else 0
    return clip[:, :, y : y + size, x : x + size]


def jitter_crop(clip: Tensor, jitter: tuple[int, int], size: int, rng: random.Random) -> Tensor:
    """SlowFast's spatial sampling without a relative scale (`spatial_sampling`): the short
    side scaled to round(U[jitter]) (`random_short_side_scale_jitter`), then a random
    size × size crop (`random_crop`): the ρ study's fine-tuning and linear protocol."""
    return random_crop(short_side_scale(clip, round(rng.uniform(*jitter))), size, rng)


def ssl_colour(clip: Tensor, rng: random.Random, jitter: tuple[float, ...] = (0.6, 0.6, 0.6, 0.15),
               p_jitter: float = 0.8, p_gray: float = 0.2, p_blur: float = 0.5) -> Tensor:  # fmt: skip
    """The ρ study's SSL colour augmentation of a whole clip (SlowFast
    `slowfast/datasets/transform.py` `color_jitter_video_ssl` with SSL_MOCOV2_AUG): the clip
    (C, T, H, W) in 0..255 is one tall (C, T·H, W) image, so every frame gets the same
    parameters (and the blur straddles vertically adjacent frames, as the official code).
    With p 0.8 a colour jitter (brightness, contrast, saturation 0.6, hue 0.15; factors in
    a random order), with p 0.2 grayscale, with p 0.5 a Gaussian blur of σ ~ U(0.1, 2)
    (torchvision's kernel 2⌈3σ⌉ + 1 for PIL's radius-σ blur). Draws come from `rng`; the
    official PIL round trip to uint8 is not made."""
    import torchvision.transforms.v2.functional as TF

    c, t, h, w = clip.shape
    img = clip.reshape(c, t * h, w) / 255
    if rng.random() < p_jitter:
        b, k, s, u = jitter
        factors = [rng.uniform(1 - b, 1 + b), rng.uniform(1 - k, 1 + k),
                   rng.uniform(1 - s, 1 + s), rng.uniform(-u, u)]  # fmt: skip
        ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
        order = list(range(4))
        rng.shuffle(order)
        for i in order:
            img = ops[i](img, factors[i]) if c == 3 or i < 2 else img  # colour ops need RGB
    if rng.random() < p_gray and c == 3:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if rng.random() < p_blur:
        sigma = rng.uniform(0.1, 2.0)
        k = 2 * math.ceil(3 * sigma) + 1
        img = TF.gaussian_blur(img.unsqueeze(0), [k, k], [sigma, sigma])[0]
    return (img.clamp(0, 1) * 255).reshape(c, t, h, w)


# SlowFast `color_jitter_video_ssl` settings (`ssl_colour`'s keywords): "ssl" the ρ study's
# SSL views (SSL_MOCOV2_AUG, data.ssl_color), "finetune" its UCF101 / HMDB51 fine-tuning
# (`finetune_ucf_Slow_R50_syn0.yaml`, the branch without SSL_MOCOV2_AUG: jitter of brightness,
# contrast, saturation 0.4 and hue 0.1 always, grayscale p 0.2, no blur; data.color_jitter)
CLIP_COLOUR = {
    "ssl": {},
    "finetune": dict(jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=1.0, p_gray=0.2, p_blur=0.0),
}


def to_channels(clip: Tensor, channels: int) -> Tensor:
    """(3, T, H, W) RGB -> (channels, T, H, W): 1 = luma (ITU-R 601 weights)."""
    if channels == 3 or clip.shape[0] == channels:
        return clip
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=clip.dtype).view(3, 1, 1, 1)
    return (clip * weights).sum(0, keepdim=True)


def train_clip(
    video: Tensor,
    fps: float | None,
    *,
    frames: int,
    stride: int,
    size: int,
    scale: tuple[float, float],
    hflip: bool,
    channels: int = 3,
    rng: random.Random | None = None,
    augment: ClipAugment | None = None,
    colour: str = "",
    jitter: tuple[int, int] | tuple[()] = (),
) -> Tensor:
    """A training clip of a decoded video uint8 [F, H, W, 3] -> float [C, T, size, size] in
    0..255: random temporal position, one random resized crop and flip for all frames (all
    draws, in this order, from `rng`: start, crop, flip; with `augment`, its RandAugment
    before the crop and RandomErasing last; `colour` and `jitter` as `augment_clip`)."""
    rng = rng or random.Random()
    window = clip_window(frames, stride, fps)
    start = clip_start(len(video), window, rng=rng)
    idx = clip_indices(len(video), start, window, frames)
    return augment_clip(video, idx, size=size, scale=scale, hflip=hflip, channels=channels,
                        rng=rng, augment=augment, colour=colour, jitter=jitter)  # fmt: skip


def augment_clip(
    video: Tensor,
    idx: Tensor,
    *,
    size: int,
    scale: tuple[float, float],
    hflip: bool,
    channels: int,
    rng: random.Random,
    colour: str = "",
    augment: ClipAugment | None = None,
    jitter: tuple[int, int] | tuple[()] = (),
) -> Tensor:
    """Frames `idx` of uint8 [F, H, W, 3] -> float [C, T, size, size] in 0..255: with
    `colour` ("ssl" or "finetune", `CLIP_COLOUR`) SlowFast's colour augmentation of the clip
    first (`ssl_colour`, before the crop as the official order), then one random resized
    crop, or with `jitter` = (min, max) a short-side jitter and random crop (`jitter_crop`),
    and a flip, the same for all frames (draws from `rng`: colour, crop, flip). `augment`
    (fine-tuning, mae_st `util/kinetics.py` `_aug_frame`): RandAugment of the frames before
    the crop and RandomErasing of the finished clip, each one draw per clip
    (`visrep.data.clip_augment`)."""
    frames = video[idx]  # [T, H, W, 3] uint8
    if augment:
        frames = augment.frames(frames, rng)
    clip = frames.permute(3, 0, 1, 2).float()  # [3, T, H, W]
    if colour:
        clip = ssl_colour(clip, rng, **CLIP_COLOUR[colour])
    if jitter:
        clip = jitter_crop(clip, jitter, size, rng)
    else:
        clip = resized_crop(clip, rrc_params(clip.shape[2], clip.shape[3], scale, rng=rng), size)
    if hflip and rng.uniform(0, 1) < 0.5:
        clip = clip.flip(-1)
    clip = to_channels(clip, channels)
    return augment.clip(clip, rng) if augment else clip


def train_clips(
    video: Tensor,
    fps: float | None,
    *,
    rho: int,
    frames: int,
    stride: int,
    size: int,
    scale: tuple[float, float],
    hflip: bool,
    channels: int = 3,
    rng: random.Random | None = None,
    colour: bool = False,
    jitter: tuple[int, int] | tuple[()] = (),
) -> list[Tensor]:
    """The positives of one video for the ρ study: ρ ≥ 2 clips at independent times
    (`rho_clip_starts`), or for ρ = 1 two augmentations of one clip (SlowFast
    TRAIN_CROP_NUM_TEMPORAL 1 with TRAIN_CROP_NUM_SPATIAL 2). Each clip gets its own
    random resized crop and flip (`colour`: its own SSL colour augmentation first), drawn
    from `rng` after the starts, clip by clip in model order: a list of float
    [C, T, size, size] in 0..255."""
    rng = rng or random.Random()
    window = clip_window(frames, stride, fps)
    starts = rho_clip_starts(len(video), window, rho, rng) if rho > 1 else [
        clip_start(len(video), window, rng=rng)] * 2  # fmt: skip
    kw = dict(size=size, scale=scale, hflip=hflip, channels=channels, rng=rng,
              colour="ssl" if colour else "", jitter=jitter)  # fmt: skip
    return [augment_clip(video, clip_indices(len(video), s, window, frames), **kw) for s in starts]


def multiview_clips(
    video: Tensor,
    fps: float | None,
    *,
    frames: int,
    stride: int,
    size: int,
    temporal_views: int = 4,
    spatial_views: int = 1,
    channels: int = 3,
    offset: bool = True,
) -> Tensor:
    """Multi-view testing: N_t clips by the offset rule × N_s uniform crops (1: centre)
    after scaling the short side to `size`: float [N_t·N_s, C, T, size, size] in 0..255."""
    window = clip_window(frames, stride, fps)
    views = []
    for t in range(temporal_views):
        start = clip_start(len(video), window, view=t, num_views=temporal_views, offset=offset)
        clip = video[clip_indices(len(video), start, window, frames)].permute(3, 0, 1, 2).float()
        clip = short_side_scale(clip, size)
        spatial = [1] if spatial_views == 1 else list(range(spatial_views))
        views += [to_channels(uniform_crop(clip, size, s), channels) for s in spatial]
    return torch.stack(views)
