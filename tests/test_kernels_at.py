"""scripts/kernels_at.py: a commit's kernels as an importable copy and a replay plug-in."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit runs in the kernel modules

import pytest
import torch

from kernels.synthetic import make_inputs

_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def script(load_script):
    return load_script("kernels_at")


def _has_history() -> bool:
    out = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"], capture_output=True, check=False)
    return out.returncode == 0


@pytest.mark.skipif(not _has_history(), reason="needs the repository's git history")
def test_snapshot_of_head_runs_as_a_plugin(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    sha = script.snapshot(_ROOT, "HEAD", tmp_path)
    package = tmp_path / f"kernels_{sha}"
    committed = subprocess.run(
        ["git", "-C", str(_ROOT), "ls-tree", "--name-only", "HEAD", "kernels/"], capture_output=True, text=True
    ).stdout.split()
    assert sorted(p.name for p in package.glob("*.py")) == sorted(Path(p).name for p in committed if p.endswith(".py"))
    assert not any("from kernels." in p.read_text() for p in package.glob("*.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugin = importlib.import_module(f"at_{sha}")
        impl = plugin.Triton(torch.device("cpu"))
        assert type(impl).__mro__[1].__module__ == f"kernels_{sha}.triton_postprocess"
        inputs = make_inputs(seed, queries=12, input_size=64, frame_sizes=[(90, 120)], num_confident=3)
        from kernels.triton_postprocess import TritonPostprocess

        ours = TritonPostprocess(torch.device("cpu"))(inputs)
        theirs = impl(inputs)
        assert [m.counts for r in ours for m in r.masks] == [m.counts for r in theirs for m in r.masks]
    finally:
        for name in [n for n in sys.modules if n.startswith((f"kernels_{sha}", f"at_{sha}"))]:
            del sys.modules[name]
    with pytest.raises(SystemExit, match="kernels_at: git"):
        script.snapshot(_ROOT, "no-such-ref-anywhere", tmp_path)
