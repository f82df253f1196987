"""`bench replay`: time implementations on captured case sets, check every output, write results + Markdown.

`register(subparsers)` adds the sub-command; `add_replay_arguments(parser, combined)` adds its options (in
combined mode, for `bench capture-and-replay`, without --cases-dir and --device, which the dispatcher adds
once); `run_replay(args)` runs it and returns the exit code: 0 when every implementation passes the
correctness gate, 1 when one fails it or raised; user errors raise BenchError (the dispatcher exits 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cases.argtypes import non_negative_int, positive_int
from cases.errors import BenchError
from replay.affinity import available_cpus, format_cpus, parse_cpus
from replay.loading import default_cases_dir
from replay.markdown import compact_table
from replay.probe import moved_by
from replay.runner import ReplayOptions, run_replay_options
from replay.timing import TimingConfig

__all__ = ["add_replay_arguments", "register", "run_replay"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench replay` to the dispatcher's sub-commands."""
    parser = subparsers.add_parser(
        "replay",
        help="time implementations on captured case sets and check every output",
        description="Replay captured post-processing calls against implementations: interleaved timed passes, "
        "statistics, speed-ups with confidence intervals, and a byte-exact correctness gate.",
    )
    parser.add_argument(
        "--cases-dir",
        action="append",
        type=Path,
        default=None,
        metavar="DIR",
        help="case set to replay; repeat for several (each reported separately). Default: the directory under "
        "./cases/ whose manifest.json is newest (the last captured set)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    add_replay_arguments(parser, combined=False)
    parser.set_defaults(handler=run_replay)


def _percent(text: str) -> float:
    value = float(text.rstrip("%"))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a percentage > 0, got {text}")
    return value / 100.0


def _cpus(text: str) -> frozenset[int]:
    """--cpu-affinity's value: a CPU list (taskset -c's syntax) of CPUs this process may run on."""
    if not hasattr(os, "sched_setaffinity"):
        raise argparse.ArgumentTypeError("this operating system cannot pin a process to CPUs")
    try:
        cpus = parse_cpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    available = available_cpus()
    if cpus - available:
        raise argparse.ArgumentTypeError(
            f"CPU {format_cpus(cpus - available)} is not available to this process (it may run on "
            f"{format_cpus(available)})"
        )
    return cpus


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def add_replay_arguments(parser: argparse.ArgumentParser, combined: bool) -> None:
    """Replay options; combined=True leaves out --cases-dir and --device (the dispatcher adds them once)."""
    del combined  # --cases-dir and --device are added by register() for the stand-alone command only
    group = parser.add_argument_group("replay")
    group.add_argument(
        "--impl",
        action="append",
        default=None,
        metavar="A,B,...",
        help="implementations to time: built-in names (reference, triton) or package.module:function; the first "
        "is the baseline. Default: every built-in available on the device",
    )
    group.add_argument("--max-cases", type=positive_int, default=None, help="replay only the first N cases of a set")
    group.add_argument("--repeats", type=positive_int, default=3, help="timed passes over all cases (default 3)")
    group.add_argument(
        "--warmup-repeats", type=non_negative_int, default=1, help="untimed warm-up passes first (default 1)"
    )
    group.add_argument("--cold", action="store_true", help="flush the L2 (or CPU last-level cache) before each call")
    group.add_argument("--gc", action="store_true", help="keep Python's garbage collector on during timed passes")
    group.add_argument(
        "--target-ci",
        type=_percent,
        default=None,
        metavar="PCT",
        help="after --repeats, keep adding passes until every median's 95%% CI is within PCT%% (or --max-time)",
    )
    group.add_argument(
        "--max-time", type=_seconds, default=None, metavar="S", help="time budget in seconds for repeating passes"
    )
    group.add_argument(
        "--min-effect",
        type=_percent,
        default=0.05,
        metavar="PCT",
        help="smallest speed-up called significant, in percent (default 5)",
    )
    group.add_argument(
        "--device-events",
        choices=["separate", "inline"],
        default="separate",
        help="phased implementations' device time: CUDA events in a pass of their own after the timed passes "
        "(default: the timed window holds only the implementation's calls) or in every timed call (an event "
        "record between enqueue and finish, inside the window)",
    )
    group.add_argument(
        "--cpu-affinity",
        type=_cpus,
        default=None,
        metavar="CPUS",
        help="run the replay pinned to these CPUs, e.g. 5 or 4-7 (every thread, as taskset -c: on a shared or "
        "virtual host the scheduler's moves otherwise change the host times from run to run)",
    )
    group.add_argument("--skip-bad", action="store_true", help="skip corrupt case files (reported) instead of stopping")
    group.add_argument("--no-check", action="store_true", help="skip the correctness gate (timing only)")
    group.add_argument("--results-dir", type=Path, default=Path("bench_results"), help="default: bench_results")
    group.add_argument("--label", default="replay", help="name in the results file name (default: replay)")
    group.add_argument("--machine", default=None, help="results sub-directory (default: GPU model, or cpu-<model>)")
    group.add_argument("--shuffle-seed", type=int, default=0, help="seed of the per-pass shuffles (default 0)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--no-plots", action="store_true", help="skip the plots drawn next to the results")


def _impl_specs(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    specs = [s.strip() for value in values for s in value.split(",") if s.strip()]
    if not specs:
        raise BenchError("--impl needs at least one implementation name")
    return specs


def _cases_dirs(value: object) -> list[Path]:
    """--cases-dir as given (one path from capture-and-replay, a list from replay) or the default set."""
    if value is None or value == []:
        return [default_cases_dir()]
    if isinstance(value, (list, tuple)):
        return [Path(v) for v in value]
    return [Path(str(value))]


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """ReplayOptions from parsed arguments (works for both replay and capture-and-replay)."""
    timing = TimingConfig(
        repeats=args.repeats,
        warmup_repeats=args.warmup_repeats,
        cold=args.cold,
        gc=args.gc,
        target_ci=args.target_ci,
        max_time_s=args.max_time,
        check=not args.no_check,
        seed=args.shuffle_seed,
        progress=False if args.no_progress else None,
        device_events=args.device_events,
    )
    return ReplayOptions(
        cases_dirs=_cases_dirs(getattr(args, "cases_dir", None)),
        impls=_impl_specs(args.impl),
        device=getattr(args, "device", "auto") or "auto",
        max_cases=args.max_cases,
        skip_bad=args.skip_bad,
        results_dir=args.results_dir,
        label=args.label,
        machine=args.machine,
        min_effect=args.min_effect,
        cpu_affinity=args.cpu_affinity,
        timing=timing,
        argv=list(sys.argv),
    )


def run_replay(args: argparse.Namespace) -> int:
    """Run `bench replay` for parsed arguments; prints the compact table and where results went."""
    outcome = run_replay_options(options_from_args(args))
    print(compact_table(outcome.results))
    spread = moved_by(outcome.results.get("host_probe") or [])
    if spread is not None:
        print(f"warning: the host's speed moved by {spread:.2f}x during the run (host speed probe): compare ratios")
    print(f"results: {outcome.json_path}")
    if outcome.markdown_path is not None:
        print(f"markdown: {outcome.markdown_path}")
    if outcome.json_path is not None and not args.no_plots:
        from replay.plots import render_all  # matplotlib is slow to import: only when plotting

        plots_dir = outcome.json_path.with_name(outcome.json_path.stem + "_plots")
        render_all(outcome.results, plots_dir)
        print(f"plots: {plots_dir}")
    for case_set in outcome.results["case_sets"]:
        for spec, impl in case_set["implementations"].items():
            verdict = impl["correctness"]["verdict"]
            if verdict in ("mismatch", "error"):
                print(
                    f"bench: correctness gate failed: {spec} on {case_set['directory']}: {verdict} "
                    f"(details in {outcome.json_path})",
                    file=sys.stderr,
                )
    return outcome.exit_code
