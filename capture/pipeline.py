"""The capture loop: frames -> pre-processing -> model -> post-processing (kernels registry) -> case files.

Everything the user can get wrong (source, model, implementation, device, directory) is checked before
the cases directory is touched, so a bad invocation leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from capture.backends import Backend, load_backend
from capture.preprocess import Preprocessed, preprocess_frame
from capture.progress import CaptureProgress
from capture.recorder import CaseRecorder, check_directory, library_versions
from capture.samplevideo import SAMPLE_SIZES, ensure_sample_video
from capture.source import Frame, FrameSource, VideoSource, open_source
from cases.errors import BenchError
from kernels.contract import PostprocessInputs

__all__ = ["CaptureConfig", "CaptureResult", "resolve_device", "run"]

_PRIME_FRAMES = 25
_PRIME_SPAN = 600  # at most this many frames are scanned for the stand-in's background model
_PRIME_MIN_SPAN = 150  # and at least this many, when the video has them


@dataclass
class CaptureConfig:
    """All settings of one capture run (the CLI flags, by name)."""

    cases_dir: Path
    video: str | None = None
    model: str = "standin"
    capture_count: int = 30
    max_frames: int | None = None
    every: int = 1
    start: int = 0
    impl: str = "reference"
    device: str = "auto"
    overwrite: bool = False
    resume: bool = False
    resize: str = "stretch"
    static_crop: tuple[int, int, int, int] | None = None
    same_shape: tuple[int, int] | None = None
    batch: int = 1
    threshold: float = 0.5
    seed: int = 0
    progress: bool = True


@dataclass
class CaptureResult:
    """What a run produced: the set's directory, its case count, frames read in this run, timing."""

    cases_dir: Path
    count: int
    captured: int
    frames_read: int
    elapsed: float
    complete: bool
    notes: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is a BenchError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _check_numbers(config: CaptureConfig) -> None:
    if config.capture_count < 1:
        raise BenchError(f"--capture-count must be >= 1, got {config.capture_count}")
    if config.batch < 1:
        raise BenchError(f"--batch must be >= 1, got {config.batch}")
    if config.every < 1 or config.start < 0 or (config.max_frames is not None and config.max_frames < 1):
        raise BenchError("--every and --max-frames must be >= 1 and --start >= 0")
    if not 0.0 <= config.threshold < 1.0:
        raise BenchError(f"--threshold must be in [0, 1), got {config.threshold}")


def _video_spec(video: str | None) -> str:
    """None, "sample", "sample:720p" or "sample:1080p" -> the cached sample video (made on first use)."""
    if not video or video == "sample":
        return str(ensure_sample_video())
    kind, _, size = video.partition(":")
    if kind == "sample" and size in SAMPLE_SIZES and not Path(video).exists():
        return str(ensure_sample_video(SAMPLE_SIZES[size]))
    return video


def _implementation(spec: str, device: torch.device) -> object:
    from kernels.registry import get_implementation

    try:
        return get_implementation(spec, device)
    except ValueError as exc:
        raise BenchError(f"--impl: {exc}") from None


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prime(backend: Backend, source: FrameSource, config: CaptureConfig, start: int, frames_needed: int) -> None:
    """Give a background-modelling backend frames sampled over (at least) the part of the video we will read."""
    if not backend.wants_priming or not isinstance(source, VideoSource) or not source.total_frames:
        return
    span = min(source.total_frames - start, _PRIME_SPAN, max(frames_needed * config.every, _PRIME_MIN_SPAN))
    if span <= 0:
        return
    step = max(1, span // _PRIME_FRAMES)
    images = [
        _preprocess(f, backend, config).image for f in source.frames(start=start, every=step, max_frames=_PRIME_FRAMES)
    ]
    backend.prime(images)


def _preprocess(frame: Frame, backend: Backend, config: CaptureConfig) -> Preprocessed:
    return preprocess_frame(frame.rgb, backend.input_size, resize=config.resize, static_crop=config.static_crop)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (kill) into KeyboardInterrupt so the manifest is finalised like on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: CaptureConfig) -> CaptureResult:
    """Capture config.capture_count cases (in total, counting a resumed set's) into config.cases_dir.

    Raises BenchError when the source runs out first; the cases written so far are kept and the
    manifest says complete=false with the reason.
    """
    _check_numbers(config)
    device = resolve_device(config.device)
    impl = _implementation(config.impl, device)
    video = _video_spec(config.video)
    source = open_source(video, same_shape=config.same_shape)
    backend = load_backend(config.model, device=device, seed=config.seed, stills=source.is_stills)
    settings = {
        "resize": config.resize,
        "static_crop": list(config.static_crop) if config.static_crop else None,
        "same_shape": list(config.same_shape) if config.same_shape else None,
        "every": config.every,
        "start": config.start,
        "max_frames": config.max_frames,
        "batch": config.batch,
        "threshold": config.threshold,
        "seed": config.seed,
    }
    identity = {
        "source": source.label,
        "model": backend.spec,
        "backend": backend.name,
        "impl": config.impl,
        "device": str(device),
    }
    check_directory(config.cases_dir, overwrite=config.overwrite, resume=config.resume)
    started = time.perf_counter()

    def open_recorder() -> CaseRecorder:
        return CaseRecorder(
            config.cases_dir,
            overwrite=config.overwrite,
            resume=config.resume,
            manifest_fields={**identity, "capture_settings": settings, "complete": False},
            provenance={**identity, "model_info": backend.describe(), "versions": library_versions()},
            started=started,
        )

    # A fresh set is created only once its first case exists, so a failure on the first frame (an
    # undecodable stream, a broken model) leaves no directory behind; a resumed set is opened now.
    resuming = config.resume and Path(config.cases_dir).is_dir() and any(Path(config.cases_dir).iterdir())
    recorder = open_recorder() if resuming else None
    start, have = config.start, 0
    if recorder is not None:
        have = recorder.count
        indices = [e.get("frame_index") for e in recorder.entries]
        flat = [i for v in indices for i in (v if isinstance(v, list) else [v]) if isinstance(i, int)]
        if flat:
            start = max(start, max(flat) + config.every)
    wanted = config.capture_count - have
    result = CaptureResult(Path(config.cases_dir), have, 0, 0, 0.0, False)
    if recorder is not None and wanted <= 0:
        recorder.update(complete=True)
        result.complete = True
        result.notes.append(f"{config.cases_dir} already holds {recorder.count} cases; nothing to capture")
        return result
    _prime(backend, source, config, start, wanted * config.batch)
    expected_frames = source.expected_frames(start=start, every=config.every, max_frames=config.max_frames)
    total = min(expected_frames, wanted * config.batch) if expected_frames is not None else wanted * config.batch
    captured = frames_read = 0
    try:
        with _sigterm_as_interrupt(), CaptureProgress(total, enabled=config.progress) as bar:
            frames = source.frames(start=start, every=config.every, max_frames=config.max_frames)
            for batch in _batches(frames, config.batch):
                prepared = [_preprocess(f, backend, config) for f in batch]
                outputs = backend.infer(np.stack([p.image for p in prepared]), device)
                inputs = PostprocessInputs(
                    boxes=outputs.boxes,
                    logits=outputs.logits,
                    masks=outputs.masks,
                    threshold=float(config.threshold),
                    num_classes=backend.num_classes,
                    preprocess=[p.meta for p in prepared],
                )
                expected = impl(inputs)  # type: ignore[operator]
                index: int | list[int] = batch[0].index if len(batch) == 1 else [f.index for f in batch]
                names = [f.name for f in batch if f.name]
                extra = {"frame_index": index, **({"frame_name": names} if names else {})}
                frames_read += len(batch)
                if recorder is None:
                    recorder = open_recorder()
                recorder.frames_read = frames_read
                recorder.record(inputs, expected, extra, **extra)
                captured += 1
                bar.advance(len(batch), 1)
                if captured >= wanted:
                    break
    except KeyboardInterrupt:
        if recorder is not None:
            recorder.update(complete=False, note=f"interrupted after {recorder.count} cases")
        raise
    except Exception as exc:
        # A model or implementation failure: the set stays valid and says why it stopped.
        if recorder is not None:
            recorder.update(complete=False, note=f"stopped by {type(exc).__name__} after {recorder.count} cases")
        raise
    result.captured, result.frames_read = captured, frames_read
    result.elapsed = time.perf_counter() - started
    if captured < wanted:
        note = (
            f"{source.label} ran out of frames (--start {start}, --every {config.every}, --max-frames "
            f"{config.max_frames}): captured {have + captured} of {config.capture_count} cases"
        )
        if recorder is not None:
            note += f", kept in {config.cases_dir}"
            recorder.update(complete=False, note=note)
        raise BenchError(note)
    assert recorder is not None
    result.count = recorder.count
    recorder.update(complete=True)
    result.complete = True
    return result
