"""Markdown tables of a results dict (ready to paste in a PR) and the compact table printed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replay.probe import moved_by

__all__ = [
    "MIN_PASSES_FOR_SIGNIFICANCE",
    "by_previous_table",
    "compact_table",
    "format_ns",
    "host_probe_lines",
    "host_probe_summary",
    "results_markdown",
    "speedup_cell",
]

# Mann-Whitney on one median per pass: with 3 v 3 values the smallest two-sided p is 0.08, with 4 v 4 it is 0.03.
MIN_PASSES_FOR_SIGNIFICANCE = 4


def format_ns(value: float | None) -> str:
    """A duration in ns as 3 significant digits with a fitting unit (ns, us, ms, s); '-' when missing."""
    if value is None:
        return "-"
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} ns"


def speedup_cell(speedup: dict[str, Any] | None) -> str:
    """'1.23x [1.18, 1.30]*' (* = significant), 'baseline' for the baseline, '-' without samples."""
    if speedup is None:
        return "baseline"
    if speedup.get("ratio_of_medians") is None:
        return "-"
    lo, hi = speedup["ci95"]
    mark = "*" if speedup.get("significant") else ""
    return f"{speedup['ratio_of_medians']:.2f}x [{lo:.2f}, {hi:.2f}]{mark}"


def correctness_cell(correctness: dict[str, Any]) -> str:
    """Verdict plus counts, e.g. 'identical (40/40)' or 'mismatch (3/40; known: antialiased resize)'."""
    verdict = correctness["verdict"]
    if verdict == "unchecked":
        return "unchecked (--no-check)"
    calls = correctness["calls"]
    good = correctness["identical"] + correctness["equivalent"]
    text = f"{verdict} ({good}/{calls} calls pass"
    if correctness["errors"]:
        text += f", {correctness['errors']} errors"
    if correctness["known_differences"]:
        text += "; known: " + ", ".join(correctness["known_differences"])
    return text + ")"


def short_digest(code: dict[str, Any]) -> str:
    """An implementation's recorded source digest (replay/code_identity.py), cut to 12 hex digits for tables."""
    return (code.get("digest") or "no source files")[:19]


def _header(results: dict[str, Any]) -> list[str]:
    env, cfg = results["environment"], results["config"]
    gpu = env.get("gpu")
    where = (
        f"{gpu['name']} (driver {gpu.get('driver') or '?'}, SM clock {gpu.get('sm_clock_mhz_before') or '?'}"
        f" -> {gpu.get('sm_clock_mhz_after') or '?'} MHz)"
        if gpu
        else f"CPU {env.get('cpu_model')} (no GPU: absolute times are not meaningful, compare ratios)"
    )
    commit = (env.get("commit") or "unknown")[:10] + (" (dirty)" if env.get("dirty") else "")
    lines = [
        f"## rlebench replay: {results['label']}",
        "",
        f"{where}; torch {env.get('torch')}, triton {env.get('triton') or '-'}, CUDA {env.get('cuda') or '-'}; "
        f"commit {commit}; {results['created_utc']}.",
        f"Device {cfg.get('device')}, {'cold' if cfg.get('cold') else 'hot'} L2, GC {'on' if cfg.get('gc') else 'off'},"
        f" {cfg.get('warmup_repeats')} warm-up + {cfg.get('timed_passes')} timed passes, implementations interleaved "
        "in a shuffled order per pass; host times (device drained before each call, outputs on the host after).",
    ]
    code = [f"`{spec}` {c.get('name')} {short_digest(c)}" for spec, c in cfg.get("code", {}).items()]
    if code:
        lines.append("Code: " + "; ".join(code) + ".")
    floors = results.get("floors")
    if floors:
        lines.append(
            f"Floors of this GPU: launch + synchronize {format_ns(floors['launch_sync_ns']['p50'])}, "
            f"{floors['d2h_bytes'] // 1024} KiB D2H copy {format_ns(floors['d2h_copy_ns']['p50'])}, "
            f"floor {format_ns(floors['floor_ns'])}."
        )
    lines += host_probe_lines(results.get("host_probe") or [])
    if results.get("status") != "complete":
        lines.append(f"**Run {results.get('status')}: tables show completed work only.**")
    return lines


def host_probe_summary(points: list[dict[str, Any]]) -> str | None:
    """The host-speed probe's p50 at each point of the run (replay/probe.py), and a warning where they are far
    apart (host-bound times then moved with the host, not only with the code); None without probes."""
    if not points:
        return None
    summary = ", ".join(f"{Path(p['at']).name or p['at']} {format_ns(p['p50_ns'])}" for p in points) + "."
    spread = moved_by(points)
    if spread is not None:
        summary += (
            f" **The host's speed moved by {spread:.2f}x during the run**: host-bound times moved with it; compare"
            " same-run ratios, or run again."
        )
    return summary


def host_probe_lines(points: list[dict[str, Any]]) -> list[str]:
    """host_probe_summary as a line of the results' Markdown header (none without probes)."""
    summary = host_probe_summary(points)
    return [f"Host speed probe (fixed Python work, p50): {summary}"] if summary else []


def format_bytes(value: float | None) -> str:
    """Bytes in B / KiB / MiB with three significant digits; '-' when not measured."""
    if value is None:
        return "-"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{int(value)} B"


def results_markdown(results: dict[str, Any]) -> str:
    """The full Markdown summary: one table per case set plus device-time and correctness notes."""
    lines = _header(results)
    for case_set in results["case_sets"]:
        lines += [
            "",
            f"### `{case_set['directory']}`: {case_set['num_cases']} cases"
            + (f", {len(case_set['bad'])} bad skipped" if case_set.get("bad") else ""),
            "",
            "| implementation | calls | mean | p50 | p90 | p99 | min | max | stdev | speed-up [95% CI] | geomean "
            "| p50 / floor | correctness |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        device_rows, notes = [], []
        for spec, impl in case_set["implementations"].items():
            host = impl["stats"]["host"]
            speedup = impl.get("speedup")
            geomean = speedup.get("geomean_per_case") if speedup else None
            floor = impl.get("floor_multiple")
            if host is None:
                cells = ["0"] + ["-"] * 7
            else:
                p99 = format_ns(host["p99"]) + ("" if host["p99_reliable"] else "†")
                cells = [str(host["count"])] + [
                    format_ns(host[k]) if k != "p99" else p99
                    for k in ("mean", "p50", "p90", "p99", "min", "max", "stdev")
                ]
            lines.append(
                f"| {spec} | "
                + " | ".join(cells)
                + f" | {speedup_cell(speedup)} | {'-' if geomean is None else f'{geomean:.2f}x'} | "
                f"{'-' if floor is None else f'{floor:.1f}x'} | {correctness_cell(impl['correctness'])} |"
            )
            stats = impl["stats"]
            if stats.get("device") or stats.get("host_post"):
                memory = impl.get("memory") or {}
                device_rows.append(
                    f"| {spec} | {format_ns((stats.get('device') or {}).get('p50'))} | "
                    f"{format_ns((stats.get('host_post') or {}).get('p50'))} | {impl.get('device_source') or '-'} | "
                    f"{format_bytes(memory.get('peak_extra_per_call_max'))} | {format_bytes(memory.get('resident'))} |"
                )
            for note in impl["correctness"]["notes"][:3]:
                notes.append(f"- {spec}: {note}")
            grouped: dict[tuple[str, str], list[int]] = {}
            for message in impl["correctness"]["error_messages"]:
                grouped.setdefault((message["verdict"], message["message"]), []).append(message["case_index"])
            for (verdict, message), cases in list(grouped.items())[:3]:
                where = ", ".join(str(c) for c in sorted(set(cases)))
                notes.append(f"- {spec}, case(s) {where}: {verdict}: {message}")
        lines += by_previous_table(case_set)
        if device_rows:
            lines += [
                "",
                "| implementation | device p50 | host_post p50 | device time from | peak extra device memory per call "
                "| kept between calls |",
                "|---|---:|---:|---|---:|---:|",
            ]
            lines += device_rows
        for path, message in ((b["path"], b["message"]) for b in case_set.get("bad", [])):
            notes.append(f"- skipped bad case {path}: {message}")
        if notes:
            lines += ["", *notes]
    lines += [
        "",
        "speed-up = baseline p50 / p50 (bootstrap 95% CI); * = significant (Mann-Whitney p < 0.05 on per-pass "
        "medians and effect above --min-effect); geomean = geometric mean of per-case speed-ups; "
        "† = p99 from fewer than 300 samples (unreliable).",
    ]
    passes = results["config"].get("timed_passes") or 0
    if 0 < passes < MIN_PASSES_FOR_SIGNIFICANCE and len(results["config"].get("implementations", [])) > 1:
        lines.append(
            f"With {passes} timed passes no difference can reach p < 0.05 (the test compares one median per pass); "
            f"use --repeats {MIN_PASSES_FOR_SIGNIFICANCE + 1} or more to call a speed-up significant."
        )
    return "\n".join(lines) + "\n"


def by_previous_table(case_set: dict[str, Any]) -> list[str]:
    """Host p50 of each implementation's timed calls by the implementation called just before them (with two or
    more implementations; results from before the field existed have none)."""
    impls = case_set["implementations"]
    if len(impls) < 2 or not all(impl.get("host_by_previous") for impl in impls.values()):
        return []
    columns = [*impls, ""]
    lines = [
        "",
        "| host p50 (calls) after | " + " | ".join(f"`{c}`" if c else "a chunk's start" for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for spec, impl in impls.items():
        groups = impl["host_by_previous"]
        cells = [f"{format_ns(groups[c]['p50'])} ({groups[c]['count']})" if c in groups else "-" for c in columns]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return lines


def compact_table(results: dict[str, Any]) -> str:
    """A few aligned columns for the terminal: case set, implementation, p50, p99, speed-up, correctness."""
    rows = [("case set", "implementation", "p50", "p99", "speed-up [95% CI]", "correctness")]
    for case_set in results["case_sets"]:
        name = str(case_set["directory"])
        for spec, impl in case_set["implementations"].items():
            host = impl["stats"]["host"] or {}
            rows.append(
                (
                    name,
                    spec,
                    format_ns(host.get("p50")),
                    format_ns(host.get("p99")),
                    speedup_cell(impl.get("speedup")),
                    correctness_cell(impl["correctness"]),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
