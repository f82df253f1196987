"""Plots of a replay results dict for pull requests: latency distributions, latency vs work, speed-ups, drift.

Each plot has a `figure_*` builder (returns the matplotlib Figure, so tests can inspect axes) and a `plot_*`
function that saves it as PNG and SVG. Colours are fixed per implementation name across all plots, titles
name the GPU (or CPU) and the case sets, and every plot still draws with one sample, one implementation or
CPU-only results. matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cases.atomic import atomic_write
from cases.errors import BenchError

__all__ = [
    "PLOT_NAMES",
    "case_set_name",
    "device_description",
    "figure_latency_distribution",
    "figure_latency_over_run",
    "figure_latency_vs_work",
    "figure_speedup",
    "implementation_colors",
    "plot_latency_distribution",
    "plot_latency_over_run",
    "plot_latency_vs_work",
    "plot_speedup",
    "render_all",
]

# Built-in implementations always get the same colour, so plots of different runs read alike.
_FIXED_COLORS = {"reference": "#1f77b4", "triton": "#ff7f0e"}
_PALETTE = ["#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
_WIDTH_IN = 10.0  # 1000 px at 100 dpi: fits a PR description without scaling text below legibility
_DPI = 100
_PERCENTILES = (("p50", "o"), ("p90", "s"), ("p99", "^"))


# ----------------------------------------------------------------------------------------------- helpers


def implementation_colors(names: Iterable[str]) -> dict[str, str]:
    """A colour per implementation: fixed for built-ins, the palette in sorted-name order for the rest."""
    colors: dict[str, str] = {}
    free = [c for c in _PALETTE if c not in _FIXED_COLORS.values()]
    others = sorted(n for n in set(names) if n not in _FIXED_COLORS)
    for name in set(names) & set(_FIXED_COLORS):
        colors[name] = _FIXED_COLORS[name]
    for i, name in enumerate(others):
        colors[name] = free[i % len(free)]
    return colors


def _all_implementations(results: dict) -> list[str]:
    """Implementation specs in first-seen order (config order, then case sets)."""
    seen: list[str] = []
    for name in results.get("config", {}).get("implementations", []) or []:
        if name not in seen:
            seen.append(name)
    for case_set in results["case_sets"]:
        for name in case_set["implementations"]:
            if name not in seen:
                seen.append(name)
    return seen


def case_set_name(case_set: dict) -> str:
    """Short name of a case set: the last component of its directory."""
    return Path(str(case_set.get("directory", "cases"))).name or str(case_set.get("directory"))


def device_description(results: dict) -> str:
    """'NVIDIA H100 80GB HBM3 (driver 570.1)' for GPU runs, 'CPU: <model>' otherwise."""
    env = results.get("environment", {}) or {}
    gpu = env.get("gpu")
    if gpu:
        driver = f" (driver {gpu['driver']})" if gpu.get("driver") else ""
        return f"{gpu.get('name', 'GPU')}{driver}"
    return f"CPU: {env.get('cpu_model') or 'unknown'}"


def _title(results: dict, what: str) -> str:
    names = ", ".join(case_set_name(cs) for cs in results["case_sets"]) or "no case sets"
    return f"{what}\n{device_description(results)} · case sets: {names}"


def _timed(impl: dict, stream: str = "host") -> np.ndarray:
    """Timed (non-warm-up) samples of one stream in ns, None values dropped."""
    samples = impl["samples"]
    values = samples.get(f"{stream}_ns") or []
    warm = samples.get("warmup") or [False] * len(values)
    return np.asarray([v for v, w in zip(values, warm, strict=False) if v is not None and not w], dtype=np.float64)


def _unit(values_ns: Iterable[float]) -> tuple[float, str]:
    """Divisor and unit label that keep typical values between 1 and 1000."""
    arr = np.asarray([v for v in values_ns if v is not None and np.isfinite(v)], dtype=np.float64)
    typical = float(np.median(arr)) if arr.size else 1e3
    for divisor, label in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if typical >= divisor:
            return divisor, label
    return 1.0, "ns"


def _wants_log(values: np.ndarray) -> bool:
    positive = values[values > 0]
    return positive.size > 1 and positive.max() / positive.min() > 30


def _log_scale(ax: Any, which: str) -> None:
    """Log scale with plain tick labels (2, 5, 10 rather than 2x10^0)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _mantissa(v) in (2, 5) else ""))


def _mantissa(value: float) -> int:
    """Leading digit of a positive number (2 for 0.2, 20 and 2000)."""
    if value <= 0 or not np.isfinite(value):
        return 0
    return round(float(value / 10 ** np.floor(np.log10(value))))


def _short(name: str, limit: int = 32) -> str:
    """Implementation specs can be long module paths; keep labels from overlapping.

    Leading package components go first (pkg.sub.mod:fn -> mod:fn), then the front of what is left.
    """
    module, sep, attr = name.partition(":")
    parts = module.split(".")
    while len(name) > limit and len(parts) > 1:
        parts = parts[1:]
        name = ".".join(parts) + sep + attr
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _empty_note(ax: Any, text: str, y: float = 0.5) -> None:
    ax.text(
        0.5,
        y,
        text,
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=10,
        color="#555555",
        bbox={"facecolor": "white", "edgecolor": "#cccccc", "boxstyle": "round"},
    )


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write fig as stem.png and stem.svg atomically (temporary file, then rename); close it."""
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            target = out_dir / f"{stem}.{ext}"
            atomic_write(target, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=_DPI), what="plot")
            written.append(target)
    except OSError as exc:
        raise BenchError(f"cannot write plot {stem} to {out_dir}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return written


def _figure_legend(
    fig: Figure, results: dict, colors: dict[str, str], extra: list | None = None, names: list[str] | None = None
) -> None:
    """One legend for the whole figure, below the plots, so it never covers data (names: default all present)."""
    present = (
        names
        if names is not None
        else [
            n for n in _all_implementations(results) if any(n in cs["implementations"] for cs in results["case_sets"])
        ]
    )
    handles: list = [plt.Line2D([], [], color=colors[n], marker="s", markersize=7, linewidth=2) for n in present]
    labels = [_short(n, 40) for n in present]
    for handle, label in extra or []:
        handles.append(handle)
        labels.append(label)
    if handles:
        # one row when it fits the figure width (about 100 characters at this font size), else two
        ncol = len(handles) if sum(len(t) + 6 for t in labels) <= 100 else -(-len(handles) // 2)
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)


def _new_figure(rows: int, cols: int, row_height: float, title: str) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(
        max(rows, 1), cols, figsize=(_WIDTH_IN, 1.0 + row_height * max(rows, 1)), squeeze=False, layout="constrained"
    )
    fig.suptitle(title, fontsize=11)
    return fig, axes


# ----------------------------------------------------------------------------------------------- (a) distribution


def figure_latency_distribution(results: dict) -> Figure:
    """Per case set: box plot of host latency per implementation, and its ECDF with p50/p90/p99 marked."""
    colors = implementation_colors(_all_implementations(results))
    case_sets = results["case_sets"]
    n_impl = max((len(cs["implementations"]) for cs in case_sets), default=1)
    fig, axes = _new_figure(len(case_sets), 2, 1.4 + 0.45 * n_impl, _title(results, "Host latency per call"))
    if not case_sets:
        for ax in axes[0]:
            _empty_note(ax, "no case sets in these results")
    for row, case_set in enumerate(case_sets):
        box_ax, ecdf_ax = axes[row]
        impls = [(name, _timed(impl)) for name, impl in case_set["implementations"].items()]
        impls = [(name, values) for name, values in impls if values.size]
        divisor, unit = _unit(np.concatenate([v for _, v in impls]) if impls else [])
        label = f"host latency per call ({unit})"
        box_ax.set_xlabel(label)
        box_ax.set_title(case_set_name(case_set), fontsize=10, loc="left")
        ecdf_ax.set_xlabel(label)
        ecdf_ax.set_ylabel("fraction of calls")
        ecdf_ax.set_title(f"{case_set_name(case_set)}: ECDF", fontsize=10, loc="left")
        if not impls:
            _empty_note(box_ax, "no timed samples")
            _empty_note(ecdf_ax, "no timed samples")
            continue
        data = [values / divisor for _, values in impls]
        parts = box_ax.boxplot(data, orientation="horizontal", widths=0.6, patch_artist=True, showfliers=True)
        for patch, (name, _) in zip(parts["boxes"], impls, strict=True):
            patch.set_facecolor(colors[name])
            patch.set_alpha(0.55)
        for median in parts["medians"]:
            median.set_color("black")
        box_ax.set_yticks(range(1, len(impls) + 1), [_short(name) for name, _ in impls])
        box_ax.invert_yaxis()  # first implementation on top, like the legend
        everything = np.concatenate(data)
        for ax in (box_ax, ecdf_ax):
            if _wants_log(everything):
                _log_scale(ax, "x")
            ax.grid(True, axis="x", alpha=0.3)
        for (name, _), values in zip(impls, data, strict=True):
            xs = np.sort(values)
            ys = np.arange(1, xs.size + 1) / xs.size
            ecdf_ax.step(xs, ys, where="post", color=colors[name], label=_short(name), linewidth=1.6)
            for key, marker in _PERCENTILES:
                q = float(np.percentile(values, float(key[1:])))
                ecdf_ax.plot(
                    [q],
                    [float(np.mean(values <= q))],
                    marker=marker,
                    color=colors[name],
                    markersize=6,
                    markeredgecolor="black",
                    linestyle="none",
                )
        ecdf_ax.set_ylim(0, 1.05)
        ecdf_ax.grid(True, axis="y", alpha=0.3)
    markers = [
        (plt.Line2D([], [], marker=m, color="grey", markeredgecolor="black", linestyle="none"), k)
        for k, m in _PERCENTILES
    ]
    _figure_legend(fig, results, colors, markers)
    return fig


def plot_latency_distribution(results: dict, out_dir: str | Path, stem: str = "latency_distribution") -> list[Path]:
    """Save figure_latency_distribution as PNG and SVG; returns the paths."""
    return _save(figure_latency_distribution(results), Path(out_dir), stem)


# ----------------------------------------------------------------------------------------------- (b) vs work


def _manifest_work(case_set: dict) -> tuple[list[float], list[float]] | None:
    """Per case (detections, output mask pixels) from the case set's manifest.json, when it is still there.

    The results record only the manifest's hash; the file is used only when its hash matches, so the
    numbers describe exactly the cases that were timed. Output pixels = sum over images of N x H x W.
    """
    directory = Path(str(case_set.get("directory", "")))
    path = directory / "manifest.json"
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError):
        return None
    recorded = case_set.get("manifest_hash")
    if recorded and recorded != "sha256:" + hashlib.sha256(raw).hexdigest():
        return None
    entries = {e.get("file"): e for e in manifest.get("cases", []) if isinstance(e, dict)}
    detections, pixels = [], []
    for name in case_set.get("case_files", []):
        entry = entries.get(name)
        if entry is None or not isinstance(entry.get("detections"), list):
            return None
        dets = entry["detections"]
        sizes = entry.get("original_size") or [[0, 0]] * len(dets)
        detections.append(float(sum(dets)))
        pixels.append(float(sum(n * h * w for n, (h, w) in zip(dets, sizes, strict=False))))
    return detections, pixels


def _case_work(case_set: dict) -> tuple[list[float], list[float]] | None:
    """Per-case detections and output pixels: from the results when recorded there, else the manifest."""
    cases = case_set.get("cases")
    if isinstance(cases, list) and cases and all(isinstance(c, dict) and "detections" in c for c in cases):
        dets = [float(c["detections"]) for c in cases]
        pixels = [float(c.get("output_pixels", np.nan)) for c in cases]
        return dets, pixels
    return _manifest_work(case_set)


def figure_latency_vs_work(results: dict) -> Figure:
    """Per case set: per-case median host latency vs detections and vs output mask pixels, one colour per impl."""
    colors = implementation_colors(_all_implementations(results))
    case_sets = results["case_sets"]
    fig, axes = _new_figure(len(case_sets), 2, 3.0, _title(results, "Per-case median host latency vs work"))
    if not case_sets:
        for ax in axes[0]:
            _empty_note(ax, "no case sets in these results")
    for row, case_set in enumerate(case_sets):
        det_ax, pix_ax = axes[row]
        work = _case_work(case_set)
        medians = {
            name: np.asarray(
                [np.nan if v is None else v for v in impl.get("per_case_median_ns", {}).get("host") or []],
                dtype=np.float64,
            )
            for name, impl in case_set["implementations"].items()
        }
        all_values = np.concatenate([v for v in medians.values()]) if medians else np.array([])
        divisor, unit = _unit(all_values[np.isfinite(all_values)] if all_values.size else [])
        ylabel = f"median host latency ({unit})"
        if work is None:
            xs_det = xs_pix = None
            det_ax.set_xlabel("case index (detection counts not available)")
            pix_ax.set_xlabel("case index (output pixels not available)")
        else:
            xs_det, xs_pix = np.asarray(work[0]), np.asarray(work[1]) / 1e6
            det_ax.set_xlabel("detections in the call")
            det_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            pix_ax.set_xlabel("output mask pixels (millions)")
        for ax, xs in ((det_ax, xs_det), (pix_ax, xs_pix)):
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            plotted = False
            for name, values in medians.items():
                x = np.arange(values.size, dtype=np.float64) if xs is None else xs[: values.size]
                ok = np.isfinite(values[: x.size]) & np.isfinite(x)
                if ok.any():
                    ax.scatter(
                        x[ok],
                        values[: x.size][ok] / divisor,
                        s=22,
                        alpha=0.75,
                        color=colors[name],
                        label=_short(name),
                        edgecolors="none",
                    )
                    plotted = True
            if not plotted:
                _empty_note(ax, "no per-case medians")
            elif all_values.size and _wants_log(all_values[np.isfinite(all_values)]):
                _log_scale(ax, "y")
        det_ax.set_title(case_set_name(case_set), fontsize=10, loc="left")
    _figure_legend(fig, results, colors)
    return fig


def plot_latency_vs_work(results: dict, out_dir: str | Path, stem: str = "latency_vs_work") -> list[Path]:
    """Save figure_latency_vs_work as PNG and SVG; returns the paths."""
    return _save(figure_latency_vs_work(results), Path(out_dir), stem)


# ----------------------------------------------------------------------------------------------- (c) speed-up


def _speedup_of(case_set: dict, name: str) -> dict | None:
    """The speed-up entry of an implementation, or None when it has no ratio (baseline, or no samples)."""
    speedup = (case_set["implementations"].get(name) or {}).get("speedup")
    return speedup if speedup and speedup.get("ratio_of_medians") is not None else None


def figure_speedup(results: dict) -> Figure:
    """Speed-up vs the baseline per case set (ratio of medians) with 95% bootstrap CIs, as grouped bars."""
    colors = implementation_colors(_all_implementations(results))
    baseline = results.get("config", {}).get("baseline")
    case_sets = results["case_sets"]
    names = [n for n in _all_implementations(results) if n != baseline and any(_speedup_of(cs, n) for cs in case_sets)]
    fig, axes = _new_figure(1, 1, 3.6, _title(results, f"Speed-up vs {baseline or 'the baseline'} (p50 ratio, 95% CI)"))
    ax = axes[0][0]
    ax.set_ylabel(f"speed-up vs {_short(str(baseline))} (×)")
    ax.set_xlabel("case set")
    groups = [case_set_name(cs) for cs in case_sets]
    ax.set_xticks(range(len(groups)), groups)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xlim(-0.6, max(len(groups), 1) - 0.4)
    if not names:
        _empty_note(ax, "only the baseline was run: no speed-up to show", y=0.75)
        ax.set_ylim(0, 2)
        return fig
    width = min(0.8 / len(names), 0.3)
    top = 1.0
    for j, name in enumerate(names):
        for i, case_set in enumerate(case_sets):
            speedup = _speedup_of(case_set, name)
            if speedup is None:
                continue
            ratio = float(speedup["ratio_of_medians"])
            lo, hi = (float(v) for v in speedup.get("ci95") or (ratio, ratio))
            x = i + width * (j + 0.5 - len(names) / 2)
            ax.bar(x, ratio, width * 0.9, color=colors[name], alpha=0.85)
            ax.errorbar(x, ratio, yerr=[[max(ratio - lo, 0.0)], [max(hi - ratio, 0.0)]], color="black", capsize=4)
            marker = "" if speedup.get("significant", True) else " (n.s.)"
            ax.annotate(
                f"{ratio:.2f}×{marker}",
                (x, max(hi, ratio)),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                va="bottom",
                fontsize=8,
            )
            top = max(top, hi, ratio)
    ax.set_ylim(0, top * 1.18)
    ax.grid(True, axis="y", alpha=0.3)
    _figure_legend(fig, results, colors, names=names)
    return fig


def plot_speedup(results: dict, out_dir: str | Path, stem: str = "speedup") -> list[Path]:
    """Save figure_speedup as PNG and SVG; returns the paths."""
    return _save(figure_speedup(results), Path(out_dir), stem)


# ----------------------------------------------------------------------------------------------- (d) over run


def _pass_medians(x: np.ndarray, y: np.ndarray, reps: np.ndarray) -> list[tuple[float, float, float]]:
    """(first call, last call, median) of each timed pass: one value per pass shows drift, not the case mix."""
    out = []
    for rep in np.unique(reps):
        sel = (reps == rep) & np.isfinite(y)
        if sel.any():
            out.append((float(x[sel].min()), float(x[sel].max()), float(np.median(y[sel]))))
    return out


def figure_latency_over_run(results: dict) -> Figure:
    """Per case set: host latency of every call in run order, warm-up calls hollow, with a rolling median."""
    colors = implementation_colors(_all_implementations(results))
    case_sets = results["case_sets"]
    fig, axes = _new_figure(
        len(case_sets),
        1,
        2.8,
        _title(results, "Host latency over the run: warm-up and drift"),
    )
    for row, case_set in enumerate(case_sets):
        ax = axes[row][0]
        all_host = np.asarray(
            [v for impl in case_set["implementations"].values() for v in impl["samples"].get("host_ns", []) if v],
            dtype=np.float64,
        )
        divisor, unit = _unit(all_host)
        ax.set_xlabel("call number within the implementation's run")
        ax.set_ylabel(f"host latency ({unit})")
        ax.set_title(case_set_name(case_set), fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if all_host.size == 0:
            _empty_note(ax, "no samples")
            continue
        for name, impl in case_set["implementations"].items():
            host = impl["samples"].get("host_ns", [])
            warm = impl["samples"].get("warmup") or [False] * len(host)
            x = np.arange(len(host))
            y = np.asarray([np.nan if v is None else v for v in host], dtype=np.float64) / divisor
            is_warm = np.asarray(warm, dtype=bool)
            ax.scatter(
                x[~is_warm], y[~is_warm], s=9, color=colors[name], alpha=0.6, label=_short(name), edgecolors="none"
            )
            if is_warm.any():
                ax.scatter(x[is_warm], y[is_warm], s=14, facecolors="none", edgecolors=colors[name], linewidths=0.8)
            reps = np.asarray(impl["samples"].get("repetition") or [0] * len(host), dtype=np.int64)
            for x0, x1, median in _pass_medians(x[~is_warm], y[~is_warm], reps[~is_warm]):
                ax.plot([x0 - 0.4, x1 + 0.4], [median, median], color=colors[name], linewidth=2.0)
        if _wants_log(all_host):
            _log_scale(ax, "y")
    if not case_sets:
        _empty_note(axes[0][0], "no case sets in these results")
    passes = plt.Line2D([], [], color="grey", linewidth=2.0)
    warm = plt.Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="grey", linestyle="none")
    _figure_legend(fig, results, colors, [(warm, "warm-up call"), (passes, "median of each timed pass")])
    return fig


def plot_latency_over_run(results: dict, out_dir: str | Path, stem: str = "latency_over_run") -> list[Path]:
    """Save figure_latency_over_run as PNG and SVG; returns the paths."""
    return _save(figure_latency_over_run(results), Path(out_dir), stem)


# ----------------------------------------------------------------------------------------------- all


PLOT_NAMES: dict[str, Callable[[dict, str | Path, str], list[Path]]] = {
    "latency_distribution": plot_latency_distribution,
    "latency_vs_work": plot_latency_vs_work,
    "speedup": plot_speedup,
    "latency_over_run": plot_latency_over_run,
}


def render_all(results: dict, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Render every plot of a results dict into out_dir (PNG + SVG each); returns the written paths."""
    written: list[Path] = []
    for name, plot in PLOT_NAMES.items():
        written.extend(plot(results, out_dir, f"{prefix}{name}"))
    return written
