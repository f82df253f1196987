"""Replay results: the JSON schema, an atomic never-overwriting writer, and a validating loader.

One results file per replay run, ``<results_dir>/<machine>/<NNNN>_<label>_<utc>.json`` (NNNN counts up per
machine directory; an existing file is never replaced). The Markdown table of the run is written next to it
with the same stem and ``.md``. Times are integers in nanoseconds; a value that was not measured is ``null``.

Layout (``RESULTS_SCHEMA_VERSION`` = 1)::

    {
      "format": "rlebench.results",
      "schema_version": 1,
      "label": str, "created_utc": "2026-11-26T12:00:00Z", "machine": str,   # machine = directory name used
      "status": "complete" | "interrupted",  "exit_code": int,  # 0 pass, 1 gate failed / errors, 130 Ctrl-C
      "gate_passed": bool,                   # every implementation identical/equivalent and none raised
      "environment": {                       # replay/env.py
        "hostname", "platform", "python", "cpu_model", "cpu_count", "cpu_affinity" (CPUs the process may run on,
        e.g. "0-15"; absent in files before it existed), "torch", "triton", "numpy", "cuda",
        "gpu": null | {"name", "driver", "index", "l2_cache_bytes", "sm_clock_mhz_before", "sm_clock_mhz_after"},
        "commit": str | null, "dirty": bool | null, "command_line": [str, ...]
      },
      "config": {
        "implementations": [spec, ...], "baseline": spec, "device": "cpu" | "cuda:0", "repeats": int,
        "warmup_repeats": int, "cold": bool, "gc": bool, "device_events": "separate" | "inline" (absent before
        it existed: inline), "target_ci": float | null (fraction),
        "max_time_s": float | null, "min_effect": float (fraction), "max_cases": int | null,
        "check": bool, "skip_bad": bool, "seed": int, "cpu_affinity": str | null (--cpu-affinity, e.g. "5"),
        "timed_passes": int,  # passes actually run
        "code": {spec: {"name": str, "digest": "sha256:..." | null, "files": int}}  # replay/code_identity.py
      },
      "floors": null | {                     # GPU runs only, measured at the start of the run
        "launch_sync_ns": stats, "d2h_copy_ns": stats, "d2h_bytes": int, "floor_ns": int  # p50 sum
      },
      "host_probe": [{"at": "start" | case set directory | "end", "p50_ns": int}],  # replay/probe.py: a fixed
                                             # piece of host work timed at those points (absent in older files)
      "case_sets": [{
        "directory": str, "manifest_hash": "sha256:..." (of manifest.json) | null,
        "case_set_digest": "sha256:..." (cases.caseset.case_set_digest) | null,
        "num_cases": int, "case_files": [name, ...],
        "cases": [{"detections": int, "output_pixels": int}, ...],   # per case: the work it asks for
        "bad": [{"path": str, "message": str}, ...],            # skipped with --skip-bad
        "implementations": {
          "<spec>": {
            "phased": bool,                 # exposes enqueue/finish (device + host_post streams)
            "settings": {str: json} | null, # the implementation's own `settings` mapping (how it ran, e.g.
                                            # triton's host steps in C or Python); absent in files before it existed
            "device_source": "cuda_events" (timed calls) | "cuda_events_pass" | "profiler" | null,
            "first_call_ns": int | null,    # very first call (compilation, caches), not in stats
            "samples": {                    # one entry per call, warm-up calls included (warmup = true)
              "case_index": [int], "repetition": [int], "warmup": [bool],
              "host_ns": [int], "device_ns": [int | null], "host_post_ns": [int | null],
              "previous": [spec | null]     # the implementation called just before (null: a chunk's first call;
            },                              # absent in files before it existed)
            "host_by_previous": {spec | "": {"count": int, "p50": float}},  # timed calls by "previous" ("": null)
            "profiled_device_ns": [int | null],  # per case, from a pass after the timed ones (CUDA): torch.profiler
                                                 # kernel+memcpy time (non-phased), or events around enqueue (phased)
            "stats": {"host": stats, "device": stats | null, "host_post": stats | null},  # timed calls only
            "per_case_median_ns": {"host": [int | null], "device": [...] | null, "host_post": [...] | null},
            "floor_multiple": float | null, # host p50 / floors.floor_ns
            "memory": null (CPU) | {"peak_extra_per_call_max": int, "peak_extra_per_call_p50": int,
                       "resident": int | null},  # device bytes a call allocates beyond its inputs; kept between calls
            "speedup": null (baseline) | {
              "baseline": spec, "ratio_of_medians": float, "ci95": [lo, hi],  # baseline p50 / this p50
              "geomean_per_case": float, "mann_whitney_p": float | null, "effect": float,  # ratio - 1
              "significant": bool, "faster": bool
            },
            "correctness": {
              "checked": bool, "verdict": "identical" | "equivalent" | "mismatch" | "error" | "unchecked",
              "calls": int, "identical": int, "equivalent": int, "mismatch": int, "errors": int,
              "error_messages": [{"case_index", "repetition", "message"}],   # first few
              "notes": [str], "known_differences": [str],
              "parity": {per-case parity report, see replay/correctness.py, for cases that were not identical}
            }
          }
        }
      }]
    }

``stats`` (replay/stats.py): {"count", "mean", "stdev", "min", "p50", "p90", "p99", "max", "iqr",
"p99_reliable"} in nanoseconds (floats), or null when there are no samples.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cases.atomic import AlreadyExists, atomic_write
from cases.errors import BenchError

__all__ = [
    "RESULTS_FORMAT",
    "RESULTS_SCHEMA_VERSION",
    "load_results",
    "new_results",
    "results_stem",
    "slug",
    "utc_stamp",
    "validate_results",
    "write_results",
]

RESULTS_FORMAT = "rlebench.results"
RESULTS_SCHEMA_VERSION = 1

_REQUIRED_TOP = ("label", "created_utc", "machine", "environment", "config", "case_sets")
_NAME_RE = re.compile(r"^(\d{4,})_")


def slug(text: str, default: str = "run") -> str:
    """A file-name-safe lowercase slug (letters, digits, '-', '.'), never empty."""
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return s[:60] or default


def utc_stamp(moment: datetime | None = None) -> str:
    """Compact UTC timestamp for file names, e.g. 20261126T120000Z."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _next_number(directory: Path) -> int:
    numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _NAME_RE.match(p.name))]
    return max(numbers, default=0) + 1


def results_stem(number: int, label: str, stamp: str) -> str:
    """File stem of results number `number`: NNNN_<label>_<utc>."""
    return f"{number:04d}_{slug(label)}_{stamp}"


def write_results(
    results: dict[str, Any], results_dir: str | Path, *, markdown: str | None = None
) -> tuple[Path, Path | None]:
    """Write results JSON (and its Markdown table) under results_dir/<machine>/; return their paths.

    Atomic and never overwriting (cases.atomic, replace=False): the JSON takes the next free NNNN name,
    counting up if another writer got there first; the Markdown gets the same stem.
    """
    validate_results(results, source="results to write")
    directory = Path(results_dir) / slug(str(results["machine"]), "machine")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create results directory {directory}: {exc.strerror}") from exc
    text = json.dumps(results, indent=1, allow_nan=False, default=_json_default)
    stamp = utc_stamp()
    for _ in range(1000):
        json_path = directory / (results_stem(_next_number(directory), str(results["label"]), stamp) + ".json")
        try:
            atomic_write(json_path, text, replace=False, what="results")
            break
        except AlreadyExists:
            continue  # another writer took this number: count up again
    else:
        raise BenchError(f"could not find a free results file name in {directory}")
    md_path = None
    if markdown is not None:
        md_path = atomic_write(json_path.with_suffix(".md"), markdown, replace=False, what="results table")
    return json_path, md_path


def _json_default(value: object) -> object:
    """numpy scalars and arrays, Paths: to plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()  # type: ignore[union-attr]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def validate_results(results: object, *, source: str = "results") -> None:
    """Raise BenchError unless results is a results dict of this schema version (one line, names source)."""
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise BenchError(f"{source} is not an rlebench results file (format != {RESULTS_FORMAT!r})")
    version = results.get("schema_version")
    if not isinstance(version, int):
        raise BenchError(f"{source} has no integer schema_version")
    if version < RESULTS_SCHEMA_VERSION:
        raise BenchError(
            f"{source} uses results schema version {version}, older than version {RESULTS_SCHEMA_VERSION} "
            "that this rlebench reads; re-run the replay to regenerate it"
        )
    if version > RESULTS_SCHEMA_VERSION:
        raise BenchError(
            f"{source} uses results schema version {version}, newer than {RESULTS_SCHEMA_VERSION}; "
            "upgrade rlebench to read it"
        )
    missing = [k for k in _REQUIRED_TOP if k not in results]
    if missing:
        raise BenchError(f"{source} is missing {', '.join(missing)}")
    if not isinstance(results["case_sets"], list):
        raise BenchError(f"{source}: case_sets must be a list")
    for i, case_set in enumerate(results["case_sets"]):
        if not isinstance(case_set, dict) or not isinstance(case_set.get("implementations"), dict):
            raise BenchError(f"{source}: case_sets[{i}] has no implementations mapping")
        for name, impl in case_set["implementations"].items():
            for key in ("samples", "stats", "correctness"):
                if not isinstance(impl, dict) or key not in impl:
                    raise BenchError(f"{source}: case_sets[{i}].implementations[{name!r}] has no {key}")
            samples = impl["samples"]
            lengths = {k: len(samples.get(k, [])) for k in ("case_index", "repetition", "warmup", "host_ns")}
            if len(set(lengths.values())) != 1:
                raise BenchError(f"{source}: samples of {name!r} in case_sets[{i}] have unequal lengths {lengths}")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate one results JSON file; BenchError naming the file on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BenchError(f"results file {path} does not exist") from exc
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}") from exc
    try:
        results = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"results file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    validate_results(results, source=f"results file {path}")
    return results


def new_results(label: str, machine: str) -> dict[str, Any]:
    """An empty results skeleton of the current schema version (filled in by the replay)."""
    return {
        "format": RESULTS_FORMAT,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "label": label,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "status": "complete",
        "exit_code": 0,
        "gate_passed": True,
        "environment": {},
        "config": {},
        "floors": None,
        "case_sets": [],
    }
