"""`bench capture` and `bench make-video`, plus the pieces `bench capture-and-replay` composes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capture.backends.base import MODEL_SPEC_HELP
from cases.argtypes import non_negative_int, positive_int
from cases.errors import BenchError

__all__ = ["register", "add_capture_arguments", "run_capture", "config_from_args"]

CAPTURE_HELP = (
    "decode a video (default: the generated sample video), run a model and the post-processing, and record "
    "each call as a case file. The default model is a weight-free STAND-IN detector, not RF-DETR: it emits "
    "RF-DETR-seg-shaped raw outputs from what moves or stands out in the frame."
)


def add_capture_arguments(parser: argparse.ArgumentParser, combined: bool) -> None:
    """Capture's flags. combined (capture-and-replay): no --cases-dir/--device, and --impl is --capture-impl."""
    group = parser.add_argument_group("capture")
    group.add_argument(
        "--video_reference",
        "--video-reference",
        dest="video_reference",
        metavar="VIDEO",
        default=None,
        help="video file, stream URL (rtsp://, http://), a folder/glob of images, or sample:720p / sample:1080p "
        "(the generated sample video of `bench make-video`, also the default)",
    )
    if not combined:
        group.add_argument("--cases-dir", required=True, help="directory the case files and manifest.json go to")
        group.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default auto)")
    group.add_argument("--model", default="standin", metavar="SPEC", help=MODEL_SPEC_HELP)
    group.add_argument("--capture-count", type=positive_int, default=30, help="cases to record (default 30)")
    group.add_argument("--max-frames", type=positive_int, default=None, help="read at most this many (sampled) frames")
    group.add_argument("--every", type=positive_int, default=1, help="use every Nth frame (default 1)")
    group.add_argument("--start", type=non_negative_int, default=0, help="first frame index to use (default 0)")
    group.add_argument(
        "--capture-impl" if combined else "--impl",
        dest="capture_impl",
        default="reference",
        metavar="IMPL",
        help="post-processing implementation that produces the expected outputs (default reference)",
    )
    group.add_argument("--overwrite", action="store_true", help="replace the cases of a non-empty --cases-dir")
    group.add_argument("--resume", action="store_true", help="add to the cases of --cases-dir up to --capture-count")
    group.add_argument("--resize", default="stretch", choices=["stretch", "letterbox"], help="default stretch")
    group.add_argument("--static-crop", default=None, metavar="X0,Y0,X1,Y1", help="crop frames first (pixels)")
    group.add_argument("--same-shape", default=None, metavar="HxW", help="resize still images to one shape first")
    group.add_argument("--batch", type=positive_int, default=1, help="frames per post-processing call (default 1)")
    group.add_argument("--threshold", type=float, default=0.5, help="score threshold recorded in cases (0.5)")
    group.add_argument("--seed", type=int, default=0, help="seed of the stand-in detector's noise (default 0)")


def config_from_args(args: argparse.Namespace) -> object:
    """A pipeline.CaptureConfig from parsed flags (either mode)."""
    from capture.pipeline import CaptureConfig
    from capture.preprocess import parse_static_crop
    from capture.source import parse_shape

    return CaptureConfig(
        cases_dir=Path(args.cases_dir),
        video=args.video_reference,
        model=args.model,
        capture_count=args.capture_count,
        max_frames=args.max_frames,
        every=args.every,
        start=args.start,
        impl=args.capture_impl,
        device=args.device,
        overwrite=args.overwrite,
        resume=args.resume,
        resize=args.resize,
        static_crop=parse_static_crop(args.static_crop) if args.static_crop else None,
        same_shape=parse_shape(args.same_shape) if args.same_shape else None,
        batch=args.batch,
        threshold=args.threshold,
        seed=args.seed,
    )


def run_capture(args: argparse.Namespace) -> Path:
    """Run the capture the flags describe; returns the cases directory. BenchError on bad input."""
    from capture.pipeline import run

    result = run(config_from_args(args))  # type: ignore[arg-type]
    for note in result.notes:
        print(note, file=sys.stderr)
    fps = result.frames_read / result.elapsed if result.elapsed > 0 else 0.0
    print(
        f"captured {result.captured} cases ({result.count} in the set) from {result.frames_read} frames "
        f"in {result.elapsed:.1f} s ({fps:.1f} frames/s) -> {result.cases_dir}",
        file=sys.stderr,
    )
    return result.cases_dir


def _capture(args: argparse.Namespace) -> int:
    run_capture(args)
    return 0


def _make_video(args: argparse.Namespace) -> int:
    from capture.samplevideo import SAMPLE_SIZES, ensure_sample_video, make_video
    from capture.source import parse_shape

    size = SAMPLE_SIZES.get(args.size) or parse_shape(args.size, "--size")
    if args.frames < 1:
        raise BenchError(f"--frames must be >= 1, got {args.frames}")
    if args.output:
        path = make_video(Path(args.output), size=size, frames=args.frames, seed=args.seed)
    else:
        path = ensure_sample_video(size, frames=args.frames, seed=args.seed)
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `capture` and `make-video` to the bench dispatcher."""
    capture = subparsers.add_parser(
        "capture", help="record post-processing calls from a video", description=CAPTURE_HELP
    )
    add_capture_arguments(capture, combined=False)
    capture.set_defaults(handler=_capture)

    video = subparsers.add_parser(
        "make-video",
        help="generate the sample video (cached) and print its path",
        description="Render the deterministic sample video capture uses when --video_reference is omitted: "
        "textured objects of varied size that move, enter and leave over a textured background. Without "
        "--output it is cached per user (~/.cache/rlebench, or $RLEBENCH_CACHE).",
    )
    video.add_argument("--size", default="720p", help="720p (1280x720, default), 1080p (1920x1080), or HxW")
    video.add_argument("--frames", type=int, default=300, help="number of frames (default 300, 10 s at 30 fps)")
    video.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    video.add_argument("--output", default=None, help="write here instead of the cache")
    video.set_defaults(handler=_make_video)
