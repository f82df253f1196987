"""The `bench` command: a thin dispatcher over the sub-commands of cases, capture and replay.

It also composes capture and replay into `capture-and-replay`, the only place both meet. Errors a
user can cause (BenchError) become one line on stderr and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cases.errors import BenchError


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases-dir", required=True, help="where the captured case set is written and replayed from")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device for both phases")


def _capture_and_replay(args: argparse.Namespace) -> int:
    from capture.cli import run_capture
    from replay.cli import run_replay

    run_capture(args)
    return run_replay(args)


def build_parser() -> argparse.ArgumentParser:
    """The full `bench` argument parser (sub-commands registered by each package)."""
    import capture.cli
    import cases.cli
    import replay.cli
    import replay.reports_cli
    from rlebench import __version__

    parser = argparse.ArgumentParser(
        prog="bench",
        description="Capture real RF-DETR seg post-processing calls from video into case files, replay them "
        "against implementations with honest timing, check every output byte for byte.",
    )
    parser.add_argument("--version", action="version", version=f"rlebench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    cases.cli.register(subparsers)
    capture.cli.register(subparsers)
    replay.cli.register(subparsers)
    replay.reports_cli.register(subparsers)

    combined = subparsers.add_parser(
        "capture-and-replay",
        help="capture cases from a video (default: the generated sample video), then replay them",
        description="Capture post-processing calls from a video into --cases-dir, then replay that case set.",
    )
    _add_common(combined)
    capture.cli.add_capture_arguments(combined, combined=True)
    replay.cli.add_replay_arguments(combined, combined=True)
    combined.set_defaults(handler=_capture_and_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bench` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
