"""Report sub-commands of `bench`: plot, compare, compare-refs, report.

`register(subparsers)` adds them (the dispatcher in rlebench/cli.py calls it); each handler returns the exit
code, and user errors raise BenchError (one line, exit 2). `compare` and `compare-refs` exit 1 only when the
gate fails: a regression that is both significant and past its --fail-on threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cases.errors import BenchError
from replay.compare import DEFAULT_FAIL_ON, parse_threshold
from replay.plots import render_all
from replay.report import render_report, write_text_atomic
from replay.results import load_results

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `plot`, `compare`, `compare-refs` and `report` to the dispatcher's sub-commands."""
    plot = subparsers.add_parser(
        "plot",
        help="draw latency plots (PNG + SVG) from results files",
        description="Latency distribution + ECDF, latency vs detections and output pixels, speed-up with CIs, "
        "latency over the run; one set of plots per results file.",
    )
    plot.add_argument("results", nargs="+", type=Path, metavar="RESULTS.json")
    plot.add_argument("--out", type=Path, default=None, help="output directory (default: <results stem>_plots/)")
    plot.set_defaults(handler=run_plot)

    compare = subparsers.add_parser(
        "compare",
        help="compare two results files; exit 1 on a significant regression past --fail-on",
        description="Match case sets (by manifest hash) and implementations of two runs, print a Markdown table "
        "of deltas with CIs and p-values, warn when GPUs, drivers or case sets differ.",
    )
    compare.add_argument("base", type=Path, metavar="BASE.json")
    compare.add_argument("candidate", type=Path, metavar="CANDIDATE.json")
    _add_gate_arguments(compare)
    compare.set_defaults(handler=run_compare)

    refs = subparsers.add_parser(
        "compare-refs",
        help="replay the same case sets at two git refs (temporary worktrees) and compare",
        description="Check out --base and --candidate in temporary git worktrees, replay each with this "
        "interpreter and PYTHONPATH set to its worktree, then compare as `bench compare` does.",
    )
    refs.add_argument("--base", required=True, metavar="REF", help="git ref of the baseline, e.g. main")
    refs.add_argument("--candidate", required=True, metavar="REF", help="git ref to judge, e.g. HEAD")
    refs.add_argument("--cases-dir", action="append", type=Path, required=True, metavar="DIR", help="repeatable")
    refs.add_argument("--impl", default=None, metavar="A,B,...", help="implementations (default: replay's default)")
    refs.add_argument("--repeats", type=int, default=5, help="timed passes per ref (default 5; >= 4 for p < 0.05)")
    refs.add_argument("--warmup-repeats", type=int, default=1)
    refs.add_argument("--max-cases", type=int, default=None)
    refs.add_argument("--device", default="auto")
    refs.add_argument("--repo", type=Path, default=Path("."), help="the project's git checkout (default: .)")
    refs.add_argument(
        "--results-dir", type=Path, default=Path("bench_results/compare-refs"), help="where both results are kept"
    )
    _add_gate_arguments(refs)
    refs.set_defaults(handler=run_compare_refs)

    report = subparsers.add_parser(
        "report",
        help="write a Markdown report for a pull request from a results file",
        description="Environment, commands to reproduce, per case set latency table, parity table and plots.",
    )
    report.add_argument("results", type=Path, metavar="RESULTS.json")
    report.add_argument("--out", type=Path, default=None, help="Markdown file (default: <results stem>_report.md)")
    report.add_argument("--plots-dir", type=Path, default=None, help="default: <results stem>_plots/")
    report.add_argument("--no-plots", action="store_true", help="do not render plots (link none)")
    report.set_defaults(handler=run_report)


def _add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        action="append",
        default=None,
        metavar="[STREAM.]METRIC:PCT",
        help=f"gate, repeatable: e.g. p50:5%%, p99:10%%, device.p50:5%%, or 'correctness' (default "
        f"{', '.join(DEFAULT_FAIL_ON).replace('%', '%%')})",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table to this file")


def _default_dir(results_path: Path, suffix: str) -> Path:
    return results_path.with_name(results_path.stem + suffix)


def run_plot(args: argparse.Namespace) -> int:
    """`bench plot`: render every plot of each results file."""
    for path in args.results:
        results = load_results(path)
        out = args.out if args.out is not None else _default_dir(path, "_plots")
        prefix = f"{path.stem}_" if args.out is not None and len(args.results) > 1 else ""
        written = render_all(results, out, prefix=prefix)
        print(f"{path}: {len(written)} plot files in {out}")
    return 0


def _gates(args: argparse.Namespace) -> list:
    if not 0 < args.alpha < 1:
        raise BenchError(f"--alpha must be between 0 and 1, got {args.alpha}")
    return [parse_threshold(t) for t in args.fail_on] if args.fail_on else []


def run_compare(args: argparse.Namespace) -> int:
    """`bench compare`: print the comparison; exit 1 when the gate fails."""
    from replay.compare import compare_results

    gates = _gates(args)
    comparison = compare_results(load_results(args.base), load_results(args.candidate), gates, alpha=args.alpha)
    text = comparison.markdown()
    print(text, end="")
    if args.out is not None:
        write_text_atomic(args.out, text)
    return comparison.exit_code


def run_compare_refs(args: argparse.Namespace) -> int:
    """`bench compare-refs`: replay at both refs in worktrees, print the comparison; exit 1 when the gate fails."""
    from replay.compare_refs import compare_refs

    gates = _gates(args)
    replay_args = ["--repeats", str(args.repeats), "--warmup-repeats", str(args.warmup_repeats), "--no-progress"]
    replay_args += ["--device", args.device]
    if args.impl:
        replay_args += ["--impl", args.impl]
    if args.max_cases:
        replay_args += ["--max-cases", str(args.max_cases)]
    comparison, base, candidate = compare_refs(
        args.base,
        args.candidate,
        args.cases_dir,
        replay_args=replay_args,
        repo=args.repo,
        out_dir=args.results_dir,
        fail_on=gates,
    )
    text = (
        comparison.markdown()
        + f"\nbase {base.ref} = {base.commit[:12]} ({base.results_path}); candidate {candidate.ref} = "
        f"{candidate.commit[:12]} ({candidate.results_path}); replayed one after the other on this machine.\n"
    )
    print(text, end="")
    if args.out is not None:
        write_text_atomic(args.out, text)
    return comparison.exit_code


def run_report(args: argparse.Namespace) -> int:
    """`bench report`: render plots (unless --no-plots) and write the PR Markdown next to the results."""
    results = load_results(args.results)
    out = args.out if args.out is not None else args.results.with_name(args.results.stem + "_report.md")
    plots = []
    if not args.no_plots:
        plots_dir = args.plots_dir if args.plots_dir is not None else _default_dir(args.results, "_plots")
        plots = render_all(results, plots_dir)
    text = render_report(results, results_path=args.results, report_path=out, plots=plots)
    write_text_atomic(out, text)
    print(f"report: {out}")
    return 0
