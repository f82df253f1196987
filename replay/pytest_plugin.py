"""pytest-benchmark integration: replay case sets as benchmarks, so pytest-benchmark's storage, compare and
histogram tools work on them (`pytest --rlebench-cases-dir DIR --benchmark-only`).

Inert unless a cases directory is given: no tests are added, no fixtures are parametrized, machine info is
untouched. With one, the benchmark test of this module is added to the collection, parametrized over
implementations x case sets. Each round replays one case (cycling through the set): a fresh copy of its inputs
on the device is made in `setup` (not timed), the call runs with the GPU synchronised inside the timed region,
and every output is checked against the capture afterwards. p50/p90/p99 (and device times for phased
implementations on CUDA) go into `benchmark.extra_info`; GPU, driver, torch and triton into machine_info.

Registered as the `pytest11` entry point `rlebench`; without the entry point use `-p replay.pytest_plugin`.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

__all__ = ["RlebenchTarget", "test_rlebench_replay"]

_CACHE_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options, all prefixed --rlebench- (plus --cases-dir when nothing else defines it)."""
    group = parser.getgroup("rlebench", "rlebench: replay captured case sets as pytest-benchmark benchmarks")
    help_dir = "case set to benchmark (repeatable); enables the rlebench benchmarks"
    group.addoption(
        "--rlebench-cases-dir", action="append", dest="rlebench_cases_dirs", default=None, metavar="DIR", help=help_dir
    )
    with contextlib.suppress(ValueError):  # another plugin owns --cases-dir: --rlebench-cases-dir still works
        group.addoption(
            "--cases-dir", action="append", dest="rlebench_cases_dirs", default=None, metavar="DIR", help=help_dir
        )
    group.addoption(
        "--rlebench-impl",
        action="append",
        default=None,
        help="implementations (comma-separated, repeatable): built-in names or package.module:function "
        "(default: reference)",
    )
    group.addoption("--rlebench-device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    group.addoption("--rlebench-rounds", type=int, default=0, help="timed rounds, one case each (default 3 x cases)")
    group.addoption(
        "--rlebench-warmup-rounds", type=int, default=-1, help="untimed rounds first (default: one pass over the set)"
    )
    group.addoption("--rlebench-max-cases", type=int, default=None, help="use only the first N cases of each set")


def _cases_dirs(config: pytest.Config) -> list[Path]:
    return [Path(d) for d in (config.getoption("rlebench_cases_dirs", default=None) or [])]


def _impl_specs(config: pytest.Config) -> list[str]:
    values = config.getoption("rlebench_impl", default=None) or ["reference"]
    specs = [s.strip() for v in values for s in v.split(",") if s.strip()]
    return specs or ["reference"]


def pytest_configure(config: pytest.Config) -> None:
    """With a cases directory, add this module's benchmark test to what pytest collects."""
    if not _cases_dirs(config):
        return
    config.stash[_CACHE_KEY] = {}
    here = str(Path(__file__).resolve())
    if here not in [str(Path(a).resolve()) for a in config.args]:
        config.args.append(here)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `rlebench_target` over implementations x case sets (empty, so skipped, without a cases dir)."""
    # this module is both the plugin and, once collected, a test module: pytest calls this hook for each role
    if "rlebench_target" not in metafunc.fixturenames or getattr(metafunc, "_rlebench_parametrized", False):
        return
    metafunc._rlebench_parametrized = True  # type: ignore[attr-defined]
    config = metafunc.config
    targets = [RlebenchTarget(directory, spec) for directory in _cases_dirs(config) for spec in _impl_specs(config)]
    metafunc.parametrize("rlebench_target", targets, ids=[t.id for t in targets])


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add GPU, driver, torch, triton, CUDA and the commit to pytest-benchmark's machine info."""
    if not _cases_dirs(config):
        return
    import torch

    from cases.errors import BenchError
    from replay.env import capture_environment
    from replay.loading import resolve_device

    try:
        device = resolve_device(config.getoption("rlebench_device"))
    except BenchError:  # a bad --rlebench-device is reported by the benchmark test itself
        device = None
    env = capture_environment(device or torch.device("cpu"), argv=[])
    gpu = env.get("gpu") or {}
    machine_info["rlebench"] = {
        "device": str(device) if device is not None else config.getoption("rlebench_device"),
        "gpu": gpu.get("name"),
        "driver": gpu.get("driver"),
        "sm_clock_mhz": gpu.get("sm_clock_mhz_before"),
        "torch": env.get("torch"),
        "triton": env.get("triton"),
        "cuda": env.get("cuda"),
        "commit": env.get("commit"),
        "dirty": env.get("dirty"),
    }


@dataclass
class RlebenchTarget:
    """One benchmark: an implementation spec on a case set directory (loaded lazily, cached per session)."""

    directory: Path
    spec: str
    calls: list[tuple[int, Any, Any]] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return f"{self.spec}-{self.directory.name}"

    def run(self, benchmark: Any, config: pytest.Config) -> None:
        """Benchmark this implementation on the case set, then check every output against the capture."""
        import torch

        from cases.errors import BenchError
        from kernels.registry import get_implementation, is_phased
        from replay.correctness import CaseContext, CorrectnessTally
        from replay.loading import load_for_replay, resolve_device
        from replay.timing import phased_device_ns

        try:
            device = resolve_device(config.getoption("rlebench_device"))
            cache = config.stash.setdefault(_CACHE_KEY, {})
            key = (str(self.directory.resolve()), str(device), config.getoption("rlebench_max_cases"))
            if key not in cache:
                cache[key] = load_for_replay(self.directory, device, max_cases=config.getoption("rlebench_max_cases"))
            case_set = cache[key]
            impl = get_implementation(self.spec, device)
            problem = None
        except (BenchError, ValueError) as exc:
            problem = str(exc)
        if problem is not None:  # outside the except block: one line, no chained traceback
            pytest.fail(f"rlebench: {problem}", pytrace=False)
        n = len(case_set)
        rounds = config.getoption("rlebench_rounds") or 3 * n
        warmup = config.getoption("rlebench_warmup_rounds")
        warmup = n if warmup < 0 else warmup
        cuda = device.type == "cuda"
        phased = cuda and is_phased(impl)
        order = itertools.cycle(range(n))
        self.calls = []

        def setup() -> tuple[tuple, dict]:
            index = next(order)
            inputs = case_set.device_inputs[index].clone()  # fresh inputs per call, made outside the timing
            if cuda:
                torch.cuda.synchronize(device)
            return (index, inputs), {}

        def call(index: int, inputs: Any) -> None:
            outputs = impl.finish(impl.enqueue(inputs)) if phased else impl(inputs)
            if cuda:
                torch.cuda.synchronize(device)
            self.calls.append((index, outputs))

        benchmark.group = case_set.directory.name
        benchmark.extra_info.update(
            implementation=self.spec,
            case_set=str(case_set.directory),
            manifest_hash=case_set.manifest_hash,
            num_cases=n,
            device=str(device),
        )
        benchmark.pedantic(call, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)

        tally = CorrectnessTally()
        contexts: dict[int, Any] = {}
        for position, (index, outputs) in enumerate(self.calls):
            ctx = contexts.setdefault(index, CaseContext(case_set.cpu_inputs[index]))
            tally.check(index, position // n, case_set.expected[index], outputs, ctx)
        summary = tally.summary()
        benchmark.extra_info["correctness"] = {
            k: summary[k] for k in ("verdict", "calls", "identical", "equivalent", "mismatch", "errors")
        }
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        data = np.asarray(getattr(stats, "data", []) or [], dtype=np.float64)
        if data.size:
            p50, p90, p99 = np.percentile(data, [50, 90, 99])
            benchmark.extra_info.update(p50_s=float(p50), p90_s=float(p90), p99_s=float(p99))
        if phased:  # device time from a pass of its own: no event record inside a timed call (as bench replay)
            device_ns = [phased_device_ns(impl, inputs.clone(), device) for inputs in case_set.device_inputs]
            if device_ns:
                d50, d90, d99 = np.percentile(np.asarray(device_ns) / 1e9, [50, 90, 99])
                benchmark.extra_info.update(device_p50_s=float(d50), device_p90_s=float(d90), device_p99_s=float(d99))
        if not tally.passed:
            first = summary["error_messages"][0]["message"] if summary["error_messages"] else summary["verdict"]
            pytest.fail(f"rlebench correctness gate: {self.spec} on {case_set.directory}: {first}", pytrace=False)


def test_rlebench_replay(rlebench_target: RlebenchTarget, benchmark: Any, request: pytest.FixtureRequest) -> None:
    """Replay one case set with one implementation under pytest-benchmark (added only with --rlebench-cases-dir)."""
    rlebench_target.run(benchmark, request.config)
