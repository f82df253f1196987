"""`bench report`: one Markdown file for a pull-request description, from one results file.

It holds the environment, the commands that reproduce the run, a per-case-set table (mean, p50, p90, p99,
speed-up, correctness), the parity table (how far non-identical outputs are from the capture, and which known
differences explain them), and links to the plots (rendered next to it unless told otherwise).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from cases.atomic import atomic_write
from cases.errors import BenchError
from replay.markdown import (
    by_previous_table,
    correctness_cell,
    format_ns,
    host_probe_summary,
    short_digest,
    speedup_cell,
)
from replay.plots import case_set_name, device_description

__all__ = ["render_report", "reproduce_commands", "write_text_atomic"]


def _command_line(env: dict[str, Any]) -> str | None:
    """The recorded command line with the interpreter/script path replaced by `bench`."""
    argv = [str(a) for a in env.get("command_line") or []]
    if not argv:
        return None
    first = Path(argv[0]).name
    if first in ("bench", "__main__.py", "cli.py") or first.startswith("python"):
        rest = argv[1:]
        if first.startswith("python") and rest[:2] == ["-m", "rlebench"]:
            rest = rest[2:]
        argv = ["bench", *rest]
    return shlex.join(argv)


def reproduce_commands(results: dict[str, Any], results_path: str | Path | None = None) -> list[str]:
    """Shell lines that rebuild this run: checkout, install, the replay command, this report."""
    env = results.get("environment", {}) or {}
    lines = []
    if env.get("commit"):
        lines.append(
            f"git checkout {env['commit']}" + ("  # the run had uncommitted changes" if env.get("dirty") else "")
        )
    torch_version = str(env.get("torch") or "").split("+")[0]
    install = f"pip install torch=={torch_version} && " if torch_version else ""
    lines.append(f'{install}pip install -e ".[test]"')
    command = _command_line(env)
    if command and len(command.split()) > 1 and command.split()[1] in ("replay", "capture-and-replay"):
        lines.append(command)
    else:
        cfg = results.get("config", {}) or {}
        dirs = " ".join(f"--cases-dir {shlex.quote(str(cs['directory']))}" for cs in results["case_sets"])
        impls = ",".join(cfg.get("implementations") or [])
        lines.append(
            f"bench replay {dirs} --impl {impls} --repeats {cfg.get('repeats')} "
            f"--warmup-repeats {cfg.get('warmup_repeats')} --device {str(cfg.get('device', 'auto')).split(':')[0]}"
        )
    if results_path is not None:
        lines.append(f"bench report {shlex.quote(str(results_path))}")
    return lines


def _code_rows(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per implementation with a recorded code identity (results files from before it have none)."""
    rows = []
    for spec, code in (cfg.get("code") or {}).items():
        rows.append((f"code of `{spec}`", f"`{code.get('name')}`, {short_digest(code)} ({code.get('files')} files)"))
    return rows


def _environment(results: dict[str, Any]) -> list[str]:
    env, cfg = results.get("environment", {}) or {}, results.get("config", {}) or {}
    gpu = env.get("gpu") or {}
    commit = (env.get("commit") or "unknown")[:12] + (" (dirty)" if env.get("dirty") else "")
    rows = [
        ("device", device_description(results)),
        ("CPU", f"{env.get('cpu_model')} ({env.get('cpu_count')} cores)"),
        (
            "software",
            f"Python {env.get('python')}, torch {env.get('torch')}, triton {env.get('triton') or '-'}, "
            f"CUDA {env.get('cuda') or '-'}",
        ),
        ("commit", commit),
        *_code_rows(cfg),
        ("run", f"{results.get('label')} at {results.get('created_utc')}, status {results.get('status', 'complete')}"),
        (
            "method",
            f"{cfg.get('warmup_repeats')} warm-up + {cfg.get('timed_passes')} timed passes, baseline "
            f"`{cfg.get('baseline')}`, {'cold' if cfg.get('cold') else 'hot'} cache",
        ),
    ]
    if gpu.get("sm_clock_mhz_before"):
        rows.append(("SM clock", f"{gpu.get('sm_clock_mhz_before')} -> {gpu.get('sm_clock_mhz_after') or '?'} MHz"))
    floors = results.get("floors")
    if floors:
        rows.append(
            (
                "GPU floor",
                f"{format_ns(floors.get('floor_ns'))} (launch + sync + {floors.get('d2h_bytes', 0) // 1024} "
                "KiB copy back, p50)",
            )
        )
    probe = host_probe_summary(results.get("host_probe") or [])
    if probe:
        rows.append(("host speed probe", probe))
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if not env.get("gpu"):
        lines += ["", "_CPU-only run: absolute times say little about a GPU; compare the ratios._"]
    return lines


def _case_set_table(case_set: dict[str, Any]) -> list[str]:
    """mean/p50/p90/p99 of host time per implementation, plus device p50 when the run measured it (GPU)."""
    impls = case_set["implementations"]
    device = any(((impl.get("stats") or {}).get("device") or {}).get("p50") is not None for impl in impls.values())
    extra_head, extra_rule = (" device p50 |", "---:|") if device else ("", "")
    lines = [
        f"| implementation | calls | mean | p50 | p90 | p99 |{extra_head} speed-up [95% CI] | correctness |",
        f"|---|---:|---:|---:|---:|---:|{extra_rule}---:|---|",
    ]
    for spec, impl in impls.items():
        stats = impl.get("stats") or {}
        host = stats.get("host") or {}
        p99 = format_ns(host.get("p99")) + ("" if host.get("p99_reliable", True) or not host else "†")
        extra = f" {format_ns((stats.get('device') or {}).get('p50'))} |" if device else ""
        lines.append(
            f"| `{spec}` | {host.get('count', 0)} | {format_ns(host.get('mean'))} | {format_ns(host.get('p50'))} | "
            f"{format_ns(host.get('p90'))} | {p99} |{extra} {speedup_cell(impl.get('speedup'))} | "
            f"{correctness_cell(impl['correctness'])} |"
        )
    return lines


def _fmt(value: Any, digits: str = ".4f") -> str:
    if value is None:
        return "-"
    return f"{value:{digits}}" if isinstance(value, float) else str(value)


def _parity_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| case set | implementation | verdict | identical / equivalent / mismatch / error calls | box IoU min | "
        "max score ulp | mask IoU min | differing pixels (near 0 / real) | known differences |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for case_set in results["case_sets"]:
        for spec, impl in case_set["implementations"].items():
            c = impl["correctness"]
            summary = (c.get("parity") or {}).get("summary") or {}
            known = ", ".join(c.get("known_differences") or []) or "-"
            pixels = f"{summary.get('near_zero_pixels', 0)} / {summary.get('real_pixels', 0)}" if summary else "0 / 0"
            lines.append(
                f"| {case_set_name(case_set)} | `{spec}` | {c.get('verdict')} | {c.get('identical', 0)} / "
                f"{c.get('equivalent', 0)} / {c.get('mismatch', 0)} / {c.get('errors', 0)} | "
                f"{_fmt(summary.get('box_iou_min'))} | {_fmt(summary.get('score_max_ulp'), 'd')} | "
                f"{_fmt(summary.get('mask_iou_min'))} | {pixels} | {known} |"
            )
    return lines


def render_report(
    results: dict[str, Any],
    *,
    results_path: str | Path | None = None,
    report_path: str | Path | None = None,
    plots: list[Path] | None = None,
) -> str:
    """The PR Markdown; plot links are relative to report_path's directory when given."""
    base = Path(report_path).resolve().parent if report_path is not None else None
    sets = ", ".join(case_set_name(cs) for cs in results["case_sets"])
    lines = [f"# rlebench: {results.get('label')} on {device_description(results)}", "", f"Case sets: {sets}.", ""]
    lines += ["## Environment", "", *_environment(results), ""]
    lines += ["## Reproduce", "", "```bash", *reproduce_commands(results, results_path), "```", ""]
    lines += ["## Latency per case set", ""]
    for case_set in results["case_sets"]:
        bad = f", {len(case_set['bad'])} bad skipped" if case_set.get("bad") else ""
        lines += [f"### {case_set_name(case_set)} ({case_set.get('num_cases')} cases{bad})", ""]
        lines += [*_case_set_table(case_set), *by_previous_table(case_set), ""]
    lines += [
        "Host latency per call (outputs on the host). speed-up = baseline p50 / p50 with a bootstrap 95% CI; "
        '* = significant (Mann-Whitney on per-pass medians); † = p99 from fewer than 300 calls. "host p50 (calls) '
        "after\": each implementation's calls by the one called just before them (a call can find the host warmer "
        "after a similar implementation's).",
        "",
        "## Parity",
        "",
        *_parity_table(results),
        "",
        "Counts are calls; IoU, ulp and pixel columns summarise the cases that were not identical "
        "('-' when every call was identical).",
    ]
    pngs = [p for p in plots or [] if Path(p).suffix == ".png"]
    if pngs:
        lines += ["", "## Plots", ""]
        for png in pngs:
            png = Path(png)
            link = os.path.relpath(png.resolve(), base) if base is not None else str(png)
            svg = png.with_suffix(".svg")
            svg_link = os.path.relpath(svg.resolve(), base) if base is not None else str(svg)
            title = png.stem.replace("_", " ")
            lines += [f"![{title}]({link})", f"[{title} (SVG)]({svg_link})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to path through a temporary file and a rename (never half-written)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return atomic_write(path, text)
