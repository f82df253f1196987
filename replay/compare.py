"""Run-to-run comparison of two results files, for gating CI without firing on noise.

Case sets are matched by manifest hash (the same cases), implementations by spec. For every pair and metric
the table gives base, candidate, delta, and a bootstrap CI and a Mann-Whitney p-value on per-repetition
statistics (one value per timed pass: calls within a pass are not independent samples). A
regression fails the gate only when it is both significant (p < alpha) and past its --fail-on threshold.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cases.errors import BenchError
from replay.markdown import format_ns
from replay.probe import apart, moved_by, probe_median
from replay.stats import bootstrap_ratio_ci, mann_whitney_u

__all__ = [
    "METRICS",
    "Comparison",
    "ComparisonRow",
    "Threshold",
    "compare_results",
    "parse_threshold",
]

METRICS = ("mean", "p50", "p90", "p99", "min", "max")
STREAMS = ("host", "device", "host_post")
DEFAULT_FAIL_ON = ("p50:5%",)
_THRESHOLD_RE = re.compile(r"^(?:(host|device|host_post)\.)?(mean|p50|p90|p99|min|max):(\d+(?:\.\d*)?)%?$")


@dataclass(frozen=True)
class Threshold:
    """Fail when `stream`'s `metric` gets slower by more than `fraction` (and significantly)."""

    metric: str
    fraction: float
    stream: str = "host"

    @property
    def label(self) -> str:
        prefix = "" if self.stream == "host" else f"{self.stream}."
        return f"{prefix}{self.metric}:{self.fraction * 100:g}%"


def parse_threshold(text: str) -> Threshold | str:
    """'p50:5%' / 'device.p90:10%' -> Threshold; 'correctness' is returned as is; BenchError otherwise."""
    text = text.strip()
    if text == "correctness":
        return text
    match = _THRESHOLD_RE.match(text)
    if not match:
        raise BenchError(
            f"--fail-on {text!r}: expected [STREAM.]METRIC:PERCENT like p50:5% (metrics {', '.join(METRICS)}; "
            f"streams {', '.join(STREAMS)}) or 'correctness'"
        )
    stream, metric, percent = match.groups()
    return Threshold(metric=metric, fraction=float(percent) / 100.0, stream=stream or "host")


@dataclass
class ComparisonRow:
    """One (case set, implementation, stream metric) line of the comparison."""

    case_set: str
    implementation: str
    metric: str
    stream: str
    base_ns: float | None
    candidate_ns: float | None
    delta: float | None  # candidate / base - 1; positive = slower
    ci95: tuple[float, float] | None  # of delta: bootstrap of the per-repetition values' medians
    p_value: float | None
    repetitions: tuple[int, int]
    significant: bool
    threshold: float | None  # fraction from --fail-on, when this metric is gated
    status: str  # "regression" | "improvement" | "ok" | "no data"


@dataclass
class Comparison:
    """The outcome of compare_results: rows, warnings about comparability, and gate failures."""

    base_label: str
    candidate_label: str
    alpha: float
    rows: list[ComparisonRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when the gate fails (significant regression past a threshold, or --fail-on correctness), else 0."""
        return 1 if self.failures else 0

    def markdown(self) -> str:
        """The comparison as Markdown: a table, then warnings and the gate's verdict."""
        lines = [
            f"## rlebench compare: {self.base_label} → {self.candidate_label}",
            "",
            "| case set | implementation | metric | base | candidate | delta | 95% CI (delta) | p | significant | "
            "verdict |",
            "|---|---|---|---:|---:|---:|---|---:|---|---|",
        ]
        for row in self.rows:
            metric = row.metric if row.stream == "host" else f"{row.stream}.{row.metric}"
            ci = "-" if row.ci95 is None else f"[{_pct(row.ci95[0])}, {_pct(row.ci95[1])}]"
            p = "-" if row.p_value is None else f"{row.p_value:.3g}"
            gate = "" if row.threshold is None else f" (gate {row.threshold * 100:g}%)"
            verdict = {"regression": "**REGRESSION**", "improvement": "improvement"}.get(row.status, row.status)
            lines.append(
                f"| {row.case_set} | `{row.implementation}` | {metric} | {format_ns(row.base_ns)} "
                f"| {format_ns(row.candidate_ns)} "
                f"| {_pct(row.delta)} | {ci} | {p} (n={row.repetitions[0]}/{row.repetitions[1]}) "
                f"| {'yes' if row.significant else 'no'} | {verdict}{gate} |"
            )
        lines += [
            "",
            "delta = candidate / base - 1 (positive = slower). Each timed pass over the case set gives one value "
            "per metric (n = passes base/candidate); CI: bootstrap of the ratio of their medians; p: two-sided "
            f"Mann-Whitney U on them; significant = p < {self.alpha:g}.",
        ]
        if self.warnings:
            lines += ["", "**Warnings**", ""] + [f"- {w}" for w in self.warnings]
        lines += ["", "**Gate: FAILED**" if self.failures else "**Gate: passed**"]
        lines += [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}%"


# ----------------------------------------------------------------------------------------------- statistics


def _metric(values: np.ndarray, metric: str) -> float:
    if metric == "mean":
        return float(values.mean())
    if metric == "min":
        return float(values.min())
    if metric == "max":
        return float(values.max())
    return float(np.percentile(values, float(metric[1:])))


def _timed(impl: dict, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, repetition) of the timed calls of one stream, unmeasured (None) calls dropped."""
    samples = impl["samples"]
    values = samples.get(f"{stream}_ns") or []
    keep = [
        (v, r)
        for v, r, w in zip(values, samples.get("repetition", []), samples.get("warmup", []), strict=False)
        if v is not None and not w
    ]
    if not keep:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    arr = np.asarray(keep, dtype=np.float64)
    return arr[:, 0], arr[:, 1].astype(np.int64)


def _per_repetition(values: np.ndarray, reps: np.ndarray, metric: str) -> list[float]:
    """The metric of each timed pass (the unit of the significance test)."""
    return [_metric(values[reps == r], metric) for r in np.unique(reps)]


def _best_possible_p(n1: int, n2: int) -> float:
    """The smallest p-value the test can give with n1 and n2 values (perfect separation)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    return mann_whitney_u(list(range(n1)), list(range(n1, n1 + n2)))[1]


# ----------------------------------------------------------------------------------------------- matching


def _set_name(case_set: dict) -> str:
    return Path(str(case_set.get("directory", "?"))).name


def _set_key(case_set: dict) -> str:
    return str(case_set.get("manifest_hash") or f"dir:{case_set.get('directory')}")


def _set_names(sets: Any) -> str:
    return ", ".join(f"{_set_name(c)} ({_set_key(c)[:19]})" for c in sets) or "none"


def _environment_warnings(base: dict, candidate: dict) -> list[str]:
    """Lines saying why absolute numbers of the two runs may not be comparable."""
    warnings = []
    be, ce = base.get("environment", {}) or {}, candidate.get("environment", {}) or {}
    bg, cg = be.get("gpu"), ce.get("gpu")
    if bool(bg) != bool(cg):
        warnings.append(
            f"one run used a GPU and the other did not (base: {bg['name'] if bg else 'CPU'}, "
            f"candidate: {cg['name'] if cg else 'CPU'}): latencies are not comparable"
        )
    elif bg and cg:
        if bg.get("name") != cg.get("name"):
            warnings.append(f"different GPUs: base {bg.get('name')}, candidate {cg.get('name')}")
        if bg.get("driver") != cg.get("driver"):
            warnings.append(f"different GPU drivers: base {bg.get('driver')}, candidate {cg.get('driver')}")
    if not bg and not cg and be.get("cpu_model") != ce.get("cpu_model"):
        warnings.append(f"different CPUs: base {be.get('cpu_model')}, candidate {ce.get('cpu_model')}")
    if be.get("hostname") and ce.get("hostname") and be.get("hostname") != ce.get("hostname"):
        warnings.append(f"different hosts: base {be.get('hostname')}, candidate {ce.get('hostname')}")
    for key in ("torch", "triton", "cuda"):
        if be.get(key) != ce.get(key):
            warnings.append(f"different {key} versions: base {be.get(key)}, candidate {ce.get(key)}")
    bc, cc = base.get("config", {}) or {}, candidate.get("config", {}) or {}
    for key in ("device", "cold", "gc"):
        if bc.get(key) != cc.get(key):
            warnings.append(f"different replay setting {key}: base {bc.get(key)}, candidate {cc.get(key)}")
    settings: dict[str, dict[str, Any]] = {}
    for name, run in (("base", base), ("candidate", candidate)):
        if run.get("status", "complete") != "complete":
            warnings.append(f"the {name} run is {run.get('status')} (exit code {run.get('exit_code')})")
        spread = moved_by(run.get("host_probe") or [])
        if spread is not None:
            warnings.append(f"the host's speed moved by {spread:.2f}x during the {name} run (host speed probe)")
        for case_set in run.get("case_sets") or []:
            for spec, impl in (case_set.get("implementations") or {}).items():
                settings.setdefault(spec, {}).setdefault(name, impl.get("settings"))
    for spec, sides in settings.items():
        if sides.get("base") is not None and sides.get("candidate") is not None and sides["base"] != sides["candidate"]:
            warnings.append(f"{spec} ran with other settings: base {sides['base']}, candidate {sides['candidate']}")
    base_probe, candidate_probe = (probe_median(run.get("host_probe") or []) for run in (base, candidate))
    if apart(base_probe, candidate_probe):
        warnings.append(
            f"the host ran at another speed: host speed probe p50 {format_ns(base_probe)} (base) against "
            f"{format_ns(candidate_probe)} (candidate); host-bound differences may be the host's"
        )
    return warnings


def _match_case_sets(base: dict, candidate: dict, warnings: list[str]) -> list[tuple[dict, dict]]:
    """Pairs of case sets measured on the same cases; BenchError when there are none."""
    base_sets = {_set_key(cs): cs for cs in base["case_sets"]}
    cand_sets = {_set_key(cs): cs for cs in candidate["case_sets"]}
    pairs = [(base_sets[k], cand_sets[k]) for k in base_sets if k in cand_sets]
    for key, cs in base_sets.items():
        if key not in cand_sets:
            other = [c for c in cand_sets.values() if c.get("directory") == cs.get("directory")]
            detail = " (same directory, different manifest: the cases changed)" if other else ""
            warnings.append(f"case set {_set_name(cs)} is only in the base run{detail}; not compared")
    for key, cs in cand_sets.items():
        if key not in base_sets:
            warnings.append(f"case set {_set_name(cs)} is only in the candidate run; not compared")
    if not pairs:
        raise BenchError(
            f"the two runs share no case set: base measured {_set_names(base_sets.values())}, candidate measured "
            f"{_set_names(cand_sets.values())}; replay the same --cases-dir for both"
        )
    return pairs


# ----------------------------------------------------------------------------------------------- compare


def _row(
    name: str, spec: str, b: dict, c: dict, metric: str, stream: str, threshold: float | None, alpha: float
) -> ComparisonRow:
    bv, br = _timed(b, stream)
    cv, cr = _timed(c, stream)
    reps = (len(np.unique(br)), len(np.unique(cr)))
    if bv.size == 0 or cv.size == 0:
        return ComparisonRow(
            name, spec, metric, stream, None, None, None, None, None, reps, False, threshold, "no data"
        )
    base_value, cand_value = _metric(bv, metric), _metric(cv, metric)
    delta = cand_value / base_value - 1.0 if base_value > 0 else math.inf
    ci = p = None
    if min(reps) >= 1 and max(reps) >= 2:
        b_reps, c_reps = _per_repetition(bv, br, metric), _per_repetition(cv, cr, metric)
        p = mann_whitney_u(b_reps, c_reps)[1]
        # CI over the same unit as the test: median of per-repetition values, bootstrapped per side
        _, lo, hi = bootstrap_ratio_ci(c_reps, b_reps, resamples=1000)
        ci = (lo - 1.0, hi - 1.0)
    significant = p is not None and p < alpha
    status = "ok"
    if significant and threshold is not None and delta > threshold:
        status = "regression"
    elif significant and delta < -(threshold if threshold is not None else 0.0):
        status = "improvement"
    return ComparisonRow(
        name, spec, metric, stream, base_value, cand_value, delta, ci, p, reps, significant, threshold, status
    )


def compare_results(
    base: dict[str, Any],
    candidate: dict[str, Any],
    fail_on: list[Threshold | str] | None = None,
    *,
    alpha: float = 0.05,
) -> Comparison:
    """Compare candidate against base; the gate fails only on significant regressions past a threshold.

    fail_on holds Thresholds (parse_threshold) and optionally "correctness" (fail when the candidate's
    verdict is mismatch/error where the base passed); default p50:5%. BenchError when nothing is comparable.
    """
    gates = list(fail_on) if fail_on else [parse_threshold(t) for t in DEFAULT_FAIL_ON]
    thresholds = [g for g in gates if isinstance(g, Threshold)]
    comparison = Comparison(
        base_label=str(base.get("label", "base")), candidate_label=str(candidate.get("label", "candidate")), alpha=alpha
    )
    comparison.warnings.extend(_environment_warnings(base, candidate))
    metrics: list[tuple[str, str]] = [("host", "p50")]
    for t in thresholds:
        if (t.stream, t.metric) not in metrics:
            metrics.append((t.stream, t.metric))
    gate_of = {(t.stream, t.metric): t.fraction for t in thresholds}
    short_reps: set[tuple[int, int]] = set()
    compared = 0
    for bset, cset in _match_case_sets(base, candidate, comparison.warnings):
        name = _set_name(cset)
        for spec, cimpl in cset["implementations"].items():
            bimpl = bset["implementations"].get(spec)
            if bimpl is None:
                comparison.warnings.append(f"{name}: implementation {spec} is only in the candidate run")
                continue
            compared += 1
            for stream, metric in metrics:
                row = _row(name, spec, bimpl, cimpl, metric, stream, gate_of.get((stream, metric)), alpha)
                comparison.rows.append(row)
                if row.status == "no data" and (stream, metric) in gate_of:
                    comparison.warnings.append(f"{name} / {spec}: no {stream} samples on one side; {metric} not gated")
                if row.status != "no data" and _best_possible_p(*row.repetitions) >= alpha:
                    short_reps.add(row.repetitions)
                if row.status == "regression":
                    comparison.failures.append(
                        f"{name} / {spec}: {stream} {metric} {_pct(row.delta)} ({format_ns(row.base_ns)} → "
                        f"{format_ns(row.candidate_ns)}), p = {row.p_value:.3g}, "
                        f"past the {row.threshold * 100:g}% threshold"
                    )
            _check_correctness(name, spec, bimpl, cimpl, "correctness" in gates, comparison)
        for spec in bset["implementations"]:
            if spec not in cset["implementations"]:
                comparison.warnings.append(f"{name}: implementation {spec} is only in the base run")
    if compared == 0:
        raise BenchError("the two runs share no implementation on a common case set; nothing to compare")
    for n1, n2 in sorted(short_reps):
        comparison.warnings.append(
            f"only {n1} and {n2} timed repetitions: the per-repetition test cannot reach p < {alpha:g}, so no "
            "difference can be significant; replay with --repeats 4 or more"
        )
    return comparison


def _check_correctness(name: str, spec: str, b: dict, c: dict, gate: bool, comparison: Comparison) -> None:
    """A candidate that stopped passing the correctness gate is a warning, or a failure with --fail-on correctness."""
    bad = ("mismatch", "error")
    bv, cv = b["correctness"].get("verdict"), c["correctness"].get("verdict")
    if cv in bad and bv not in bad:
        line = f"{name} / {spec}: correctness went from {bv} to {cv}"
        (comparison.failures if gate else comparison.warnings).append(line)
