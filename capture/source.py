"""Frame sources: video files and streams through PyAV (FFmpeg), or a folder/glob of still images.

Every source yields `Frame`s (RGB uint8 [H, W, 3] plus the frame's index in the source) after
applying --start, --every and --max-frames, so the rest of capture never cares where frames came from.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cases.errors import BenchError

__all__ = ["Frame", "FrameSource", "open_source", "parse_shape", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its 0-based index in the source and RGB uint8 pixels [H, W, 3]."""

    index: int
    rgb: np.ndarray
    name: str = ""


def parse_shape(text: str, flag: str = "--same-shape") -> tuple[int, int]:
    """Parse "HxW" into (H, W); a BenchError names the flag when the text is not two positive ints."""
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise BenchError(f"{flag} expects HxW, e.g. 720x1280, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise BenchError(f"{flag} expects positive sizes, got {text!r}")
    return h, w


class FrameSource:
    """Base class: `frames()` yields sampled frames; `label` is what provenance records as the source."""

    label: str
    is_stills: bool = False
    total_frames: int | None = None

    def frames(self, *, start: int = 0, every: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
        """Frames with index >= start and (index - start) % every == 0, at most max_frames of them."""
        if start < 0 or every < 1 or (max_frames is not None and max_frames < 1):
            raise BenchError("--start must be >= 0, --every >= 1 and --max-frames >= 1")
        for yielded, frame in enumerate(self._decode(start, every), start=1):
            yield frame
            if max_frames is not None and yielded >= max_frames:
                return

    def expected_frames(self, *, start: int = 0, every: int = 1, max_frames: int | None = None) -> int | None:
        """How many frames frames() will yield, when the source knows its length (for the progress bar)."""
        if self.total_frames is None:
            return max_frames
        available = max(0, -(-(self.total_frames - start) // every))
        return available if max_frames is None else min(available, max_frames)

    def _decode(self, start: int, every: int) -> Iterator[Frame]:
        """Frames with index >= start and (index - start) % every == 0, converting only those."""
        raise NotImplementedError


class VideoSource(FrameSource):
    """A video file or stream URL decoded with PyAV; frames converted to RGB24."""

    def __init__(self, spec: str) -> None:
        import av

        self.label = spec
        self._spec = spec
        self._is_url = is_url = spec.lower().startswith(_URL_SCHEMES)
        if not is_url:
            path = Path(spec)
            if not path.exists():
                raise BenchError(f"video not found: {spec}")
            if not os.access(path, os.R_OK):
                raise BenchError(f"video is not readable: {spec}")
            self.label = str(path.resolve())
        try:
            container = av.open(spec, timeout=10.0) if is_url else av.open(spec)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise BenchError(f"cannot open video {spec}: {_one_line(exc)}") from None
        try:
            if not container.streams.video:
                raise BenchError(f"{spec} has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise BenchError(f"{spec}: unsupported video codec")
            self.codec = stream.codec_context.codec.name
            self.total_frames = int(stream.frames) if stream.frames else None
        finally:
            container.close()

    def _decode(self, start: int, every: int) -> Iterator[Frame]:
        import av

        try:
            container = av.open(self._spec, timeout=10.0) if self._is_url else av.open(self._spec)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise BenchError(f"cannot open video {self._spec}: {_one_line(exc)}") from None
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = -1
            try:
                for frame in container.decode(stream):
                    index += 1
                    if index < start or (index - start) % every:
                        continue
                    yield Frame(index=index, rgb=frame.to_ndarray(format="rgb24"))
            except av.FFmpegError as exc:
                if index < 0:
                    raise BenchError(f"cannot decode {self._spec} (codec {self.codec}): {_one_line(exc)}") from None
                # A damaged tail: keep what decoded, like players do.
                return
            if index < 0:
                raise BenchError(f"{self._spec} contains no decodable video frames")
        finally:
            container.close()


class ImageFolderSource(FrameSource):
    """Still images from a folder (sorted by name) or a glob pattern, optionally resized to one shape."""

    is_stills = True

    def __init__(self, spec: str, same_shape: tuple[int, int] | None = None) -> None:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            self.label = str(path.resolve())
        else:
            files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            self.label = spec
        if not files:
            raise BenchError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {spec}")
        self.files = files
        self.same_shape = same_shape
        self.total_frames = len(files)

    def _decode(self, start: int, every: int) -> Iterator[Frame]:
        import cv2

        for index, file in enumerate(self.files):
            if index < start or (index - start) % every:
                continue
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise BenchError(f"cannot read image {file}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self.same_shape is not None and rgb.shape[:2] != self.same_shape:
                h, w = self.same_shape
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            yield Frame(index=index, rgb=np.ascontiguousarray(rgb), name=file.name)


def open_source(spec: str, *, same_shape: tuple[int, int] | None = None) -> FrameSource:
    """A folder or glob of images -> ImageFolderSource; anything else (file or URL) -> VideoSource."""
    if Path(spec).is_dir() or (any(ch in spec for ch in "*?[") and not Path(spec).exists()):
        return ImageFolderSource(spec, same_shape)
    if same_shape is not None:
        raise BenchError("--same-shape only applies to a folder or glob of images")
    return VideoSource(spec)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
