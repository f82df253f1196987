"""Plots: every plot renders PNG + SVG from small results, with the expected axes, titles and colours."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest

from replay import plots

SCENARIOS = {
    "gpu-three-impls": {
        "gpu": "NVIDIA H100 80GB HBM3",
        "impls": ("reference", "triton", "my_pkg.post:fast"),
        "case_sets": ("nano-312", "hd-720p", "fhd-1080p"),
    },
    "cpu-two-impls": {"impls": ("reference", "triton"), "case_sets": ("nano-312",)},
    "one-impl": {"impls": ("reference",), "case_sets": ("nano-312", "hd-720p")},
    "single-sample": {"impls": ("reference",), "case_sets": ("one",), "cases": 1, "repeats": 1, "warmup_repeats": 0},
    "single-sample-two-impls": {"case_sets": ("one",), "cases": 1, "repeats": 1, "warmup_repeats": 0},
}

# figure builder -> (x label fragment, y label fragment) of its first axes
AXES = {
    plots.figure_latency_distribution: ("host latency per call", ""),
    plots.figure_latency_vs_work: ("detections in the call", "median host latency"),
    plots.figure_speedup: ("case set", "speed-up vs reference"),
    plots.figure_latency_over_run: ("call number", "host latency"),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, make_results) -> tuple[str, dict]:
    return request.param, make_results(seed=7, **SCENARIOS[request.param])


@pytest.mark.parametrize("plot_name", sorted(plots.PLOT_NAMES))
def test_plot_writes_png_and_svg(tmp_path, scenario, plot_name: str) -> None:
    _, results = scenario
    written = plots.PLOT_NAMES[plot_name](results, tmp_path, plot_name)
    assert [p.name for p in written] == [f"{plot_name}.png", f"{plot_name}.svg"]
    png, svg = written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:2000]
    assert not list(tmp_path.glob(".tmp-*")), "temporary files left behind"


@pytest.mark.parametrize("builder", list(AXES), ids=lambda f: f.__name__)
def test_figure_axes_labels_and_title(scenario, builder) -> None:
    _, results = scenario
    fig = builder(results)
    try:
        xlabel, ylabel = AXES[builder]
        first = fig.axes[0]
        assert xlabel in first.get_xlabel()
        assert ylabel in first.get_ylabel()
        title = fig._suptitle.get_text()
        expected_device = "NVIDIA H100" if results["environment"]["gpu"] else "CPU: Test CPU 9000"
        assert expected_device in title
        for case_set in results["case_sets"]:
            assert plots.case_set_name(case_set) in title
    finally:
        plots.plt.close(fig)


def test_distribution_has_box_and_ecdf_per_case_set(make_results) -> None:
    results = make_results(case_sets=("a", "b"))
    fig = plots.figure_latency_distribution(results)
    try:
        assert len(fig.axes) == 4
        ecdf = fig.axes[1]
        assert ecdf.get_ylabel() == "fraction of calls"
        assert ecdf.get_title(loc="left") == "a: ECDF"
        assert ecdf.get_legend() is None  # one figure legend below the plots instead of one per axes
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend == ["reference", "triton", "p50", "p90", "p99"]
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert ticks == ["reference", "triton"]
    finally:
        plots.plt.close(fig)


def test_colours_are_consistent_across_plots(make_results) -> None:
    results = make_results(impls=("reference", "triton", "zz.custom:impl"), slowdown={"zz.custom:impl": 0.8})
    colors = plots.implementation_colors(["reference", "triton", "zz.custom:impl"])
    assert len(set(colors.values())) == 3
    dist = plots.figure_latency_distribution(results)
    speed = plots.figure_speedup(results)
    try:
        ecdf_lines = {line.get_label(): line.get_color() for line in dist.axes[1].get_lines() if line.get_xydata().size}
        for name in ("reference", "triton", "zz.custom:impl"):
            assert mcolors.same_color(ecdf_lines[name], colors[name])
        legend = speed.legends[0]
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels == ["triton", "zz.custom:impl"]  # the baseline has no bar, so no legend entry
        for handle, label in zip(legend.legend_handles, labels, strict=True):
            assert mcolors.same_color(handle.get_color(), colors[label])
        bar_colors = [mcolors.to_hex(p.get_facecolor()[:3]) for p in speed.axes[0].patches]
        assert sorted(set(bar_colors)) == sorted({colors["triton"], colors["zz.custom:impl"]})
    finally:
        plots.plt.close(dist)
        plots.plt.close(speed)


def test_builtin_colours_do_not_depend_on_other_implementations() -> None:
    alone = plots.implementation_colors(["triton"])
    crowded = plots.implementation_colors(["a:b", "triton", "reference", "c:d"])
    assert alone["triton"] == crowded["triton"]


def test_speedup_bars_match_results(make_results) -> None:
    results = make_results(case_sets=("s1", "s2"))
    fig = plots.figure_speedup(results)
    try:
        ax = fig.axes[0]
        heights = [patch.get_height() for patch in ax.patches]
        expected = [cs["implementations"]["triton"]["speedup"]["ratio_of_medians"] for cs in results["case_sets"]]
        assert heights == pytest.approx(expected, rel=1e-12)  # bar heights are the stored floats
        assert [t.get_text() for t in ax.get_xticklabels()] == ["s1", "s2"]
    finally:
        plots.plt.close(fig)


def test_latency_vs_work_falls_back_to_case_index(make_results) -> None:
    results = make_results(case_sets=("gone",))
    del results["case_sets"][0]["cases"]  # no per-case work recorded, and no manifest on disk
    fig = plots.figure_latency_vs_work(results)
    try:
        assert fig.axes[0].get_xlabel().startswith("case index")
    finally:
        plots.plt.close(fig)


def test_latency_vs_work_reads_matching_manifest(tmp_path, make_results) -> None:
    import hashlib
    import json

    results = make_results(case_sets=("set",), cases=3)
    case_set = results["case_sets"][0]
    del case_set["cases"]
    manifest = {
        "cases": [
            {"file": n, "detections": [i, 1], "original_size": [[10, 20], [5, 5]]}
            for i, n in enumerate(case_set["case_files"])
        ]
    }
    raw = json.dumps(manifest).encode()
    (tmp_path / "manifest.json").write_bytes(raw)
    case_set["directory"] = str(tmp_path)
    case_set["manifest_hash"] = "sha256:" + hashlib.sha256(raw).hexdigest()
    dets, pixels = plots._case_work(case_set)
    assert dets == [1.0, 2.0, 3.0]
    assert pixels == [25.0, 225.0, 425.0]
    case_set["manifest_hash"] = "sha256:other"  # the manifest changed since the run: not used
    assert plots._case_work(case_set) is None


def test_render_all_with_prefix(tmp_path, make_results) -> None:
    written = plots.render_all(make_results(), tmp_path / "out", prefix="run1_")
    assert len(written) == 2 * len(plots.PLOT_NAMES)
    assert all(p.name.startswith("run1_") and p.stat().st_size > 0 for p in written)


def _without_samples(results: dict, spec: str) -> dict:
    """An implementation that produced no timed call (it raised everywhere, or the run was interrupted)."""
    for case_set in results["case_sets"]:
        impl = case_set["implementations"][spec]
        impl["samples"] = {k: [] for k in impl["samples"]}
        impl["stats"] = {"host": None, "device": None, "host_post": None}
        impl["per_case_median_ns"]["host"] = [None] * case_set["num_cases"]
        if impl["speedup"]:
            impl["speedup"].update(ratio_of_medians=None, ci95=None)
    return results


@pytest.mark.parametrize("spec", ["reference", "triton"])
def test_plots_survive_an_implementation_without_samples(tmp_path, make_results, spec: str) -> None:
    written = plots.render_all(_without_samples(make_results(), spec), tmp_path)
    assert len(written) == 8 and all(p.stat().st_size > 0 for p in written)


def test_plots_survive_no_case_sets(tmp_path, make_results) -> None:
    results = make_results()
    results["case_sets"] = []
    written = plots.render_all(results, tmp_path)
    assert len(written) == 8 and all(p.stat().st_size > 0 for p in written)
