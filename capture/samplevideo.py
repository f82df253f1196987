"""`bench make-video`: a generated, deterministic sample video used when --video_reference is omitted.

A textured background with several textured objects of varied size and shape that move, enter and
leave the frame, some crossing each other, encoded with H.264 (single-threaded, so the same seed gives
the same frames). Cached per user under $RLEBENCH_CACHE or $XDG_CACHE_HOME/rlebench (~/.cache/rlebench).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cases.atomic import atomic_write
from cases.errors import BenchError

__all__ = ["SAMPLE_SIZES", "cache_dir", "sample_video_path", "ensure_sample_video", "make_video"]

SAMPLE_SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}
DEFAULT_FRAMES = 300
DEFAULT_FPS = 30
GENERATOR_VERSION = 2  # bump when the drawing changes so caches are regenerated


@dataclass(frozen=True)
class _Sprite:
    rgb: np.ndarray  # uint8 [h, w, 3]
    alpha: np.ndarray  # bool [h, w]
    start: tuple[float, float]  # top-left at t_in, in pixels
    velocity: tuple[float, float]  # pixels per frame
    wobble: float  # amplitude of a vertical sine, pixels
    t_in: int
    t_out: int


def cache_dir() -> Path:
    """The per-user cache folder for generated videos."""
    if os.environ.get("RLEBENCH_CACHE"):
        return Path(os.environ["RLEBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rlebench"


def sample_video_path(
    size: tuple[int, int] = SAMPLE_SIZES["720p"], frames: int = DEFAULT_FRAMES, seed: int = 0
) -> Path:
    """Where the cached sample video of this size/length/seed lives."""
    h, w = size
    return cache_dir() / f"sample_{w}x{h}_{frames}f_s{seed}_v{GENERATOR_VERSION}.mp4"


def ensure_sample_video(
    size: tuple[int, int] = SAMPLE_SIZES["720p"], frames: int = DEFAULT_FRAMES, seed: int = 0
) -> Path:
    """Return the cached sample video, generating it first when it is not there yet."""
    path = sample_video_path(size, frames, seed)
    if not path.exists():
        make_video(path, size=size, frames=frames, seed=seed)
    return path


def _texture(rng: np.random.Generator, h: int, w: int, cells: int, contrast: float = 1.0) -> np.ndarray:
    """A smooth colourful texture: low-resolution noise plus stripes, upscaled; contrast scales it around its tint."""
    import cv2

    gh, gw = max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))
    low = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.float32)
    tex = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(0.05, 0.2) * max(h, w)
    stripes = 30 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period))
    tint = rng.uniform(60, 200, size=3).astype(np.float32)
    return np.clip(tint + contrast * (tex - 128 + stripes[..., None]), 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    import cv2

    mask = np.zeros((h, w), np.uint8)
    if kind == 0:  # ellipse
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1, -1)
    elif kind == 1:  # irregular polygon (blob-like)
        n = 9
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.55, 1.0, n)
        pts = np.stack([w / 2 + (w / 2 - 1) * radii * np.cos(angles), h / 2 + (h / 2 - 1) * radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    elif kind == 2:  # rounded rectangle
        r = max(1, min(h, w) // 5)
        cv2.rectangle(mask, (r, 0), (w - 1 - r, h - 1), 1, -1)
        cv2.rectangle(mask, (0, r), (w - 1, h - 1 - r), 1, -1)
        for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(mask, (cx, cy), r, 1, -1)
    else:  # L-shape / non-convex
        cv2.rectangle(mask, (0, 0), (w // 2, h - 1), 1, -1)
        cv2.rectangle(mask, (0, h // 2), (w - 1, h - 1), 1, -1)
    return mask.astype(bool)


def _sprites(rng: np.random.Generator, height: int, width: int, frames: int) -> list[_Sprite]:
    """Objects of varied size; most cross the frame (enter and leave), a few stay and wander."""
    sprites = []
    sizes = [0.08, 0.12, 0.16, 0.22, 0.3, 0.38, 0.1, 0.5]
    for i, rel in enumerate(sizes):
        oh = max(8, int(rel * height * rng.uniform(0.8, 1.2)))
        ow = max(8, int(oh * rng.uniform(0.6, 1.8)))
        alpha = _shape_mask(rng, oh, ow, i % 4)
        rgb = _texture(rng, oh, ow, cells=6)
        crossing = i % 3 != 2
        t_in = int(rng.integers(0, frames // 3)) if i >= 3 else 0
        t_out = frames if not crossing else min(frames, t_in + int(rng.integers(frames // 2, frames)))
        span = max(1, t_out - t_in)
        y0 = rng.uniform(0, max(1, height - oh))
        if crossing:
            left_to_right = bool(i % 2)
            x_start = -ow if left_to_right else width
            x_end = width if left_to_right else -ow
            vx = (x_end - x_start) / span
            vy = rng.uniform(-0.3, 0.3) * height / span
            start = (float(x_start), float(y0))
        else:
            start = (rng.uniform(0, max(1, width - ow)), float(y0))
            vx = rng.uniform(-1.5, 1.5) * width / frames / 2
            vy = rng.uniform(-1.0, 1.0) * height / frames / 2
        sprites.append(
            _Sprite(rgb, alpha, start, (float(vx), float(vy)), float(rng.uniform(0, 0.04) * height), t_in, t_out)
        )
    return sprites


def _draw(background: np.ndarray, sprites: list[_Sprite], t: int) -> np.ndarray:
    frame = background.copy()
    height, width = frame.shape[:2]
    for s in sprites:
        if not s.t_in <= t < s.t_out:
            continue
        dt = t - s.t_in
        x = round(s.start[0] + s.velocity[0] * dt)
        y = round(s.start[1] + s.velocity[1] * dt + s.wobble * math.sin(dt / 9.0))
        sh, sw = s.alpha.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sw, width), min(y + sh, height)
        if x1 <= x0 or y1 <= y0:
            continue
        a = s.alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
        np.copyto(frame[y0:y1, x0:x1], s.rgb[y0 - y : y1 - y, x0 - x : x1 - x], where=a)
    return frame


def make_video(
    path: Path,
    *,
    size: tuple[int, int] = SAMPLE_SIZES["720p"],
    frames: int = DEFAULT_FRAMES,
    fps: int = DEFAULT_FPS,
    seed: int = 0,
) -> Path:
    """Render and encode the sample video to path (atomically: temporary file, then rename)."""
    import av

    height, width = size
    if height < 16 or width < 16 or height % 2 or width % 2 or frames < 1:
        raise BenchError(f"make-video needs an even size of at least 16x16 and >= 1 frame, got {width}x{height}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot write the sample video to {path.parent}: {exc.strerror or exc}") from None
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, cells=24, contrast=0.35)
    sprites = _sprites(rng, height, width, frames)

    def encode(tmp: Path) -> None:
        # faststart puts the index first, so the file also streams over http:// without range requests
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "20"}
            stream.thread_count = 1  # deterministic output
            for t in range(frames):
                frame = av.VideoFrame.from_ndarray(_draw(background, sprites, t), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)

    atomic_write(path, encode, what="the sample video")
    return path
