"""compare-refs: two refs replayed in their own worktrees by this interpreter, then compared.

The test commits a snapshot of this working tree's packages into a throwaway git repository (so it runs the
code under test, whatever the project's own HEAD holds) and compares HEAD with HEAD on one sample case.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cases.errors import BenchError
from replay.compare_refs import build_host_steps, compare_refs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "cases" / "samples" / "nano-312"
PACKAGES = ("kernels", "cases", "capture", "replay", "rlebench")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=rlebench-test", "-c", "user.email=test@example.invalid"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def snapshot_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with one commit holding this tree's packages (no sample data, no tests)."""
    repo = tmp_path_factory.mktemp("snapshot")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "samples", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, repo / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "snapshot")
    return repo


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs the sample case set")
def test_head_against_head(tmp_path, snapshot_repo: Path) -> None:
    head = _git(snapshot_repo, "rev-parse", "HEAD")
    replay_args = ["--impl", "reference", "--device", "cpu", "--max-cases", "1", "--repeats", "2"]
    replay_args += ["--warmup-repeats", "0", "--no-progress"]
    comparison, base, candidate = compare_refs(
        "HEAD", "HEAD", [SAMPLE], replay_args=replay_args, repo=snapshot_repo, out_dir=tmp_path / "kept"
    )
    assert base.commit == candidate.commit == head
    assert base.results_path.parent == tmp_path / "kept" and base.results_path.is_file()
    assert candidate.results_path.is_file() and base.results_path != candidate.results_path
    assert [(r.case_set, r.implementation, r.metric) for r in comparison.rows] == [("nano-312", "reference", "p50")]
    assert comparison.rows[0].repetitions == (2, 2)
    assert comparison.exit_code == 0  # two passes per side can never be significant
    worktrees = _git(snapshot_repo, "worktree", "list", "--porcelain").count("worktree ")
    assert worktrees == 1, "temporary worktrees were left behind"


def test_a_worktree_builds_its_own_c_extension(tmp_path) -> None:
    """build_host_steps runs the worktree's own scripts/build_host.py: the module appears in its kernels/; a ref
    whose C does not compile gives the compiler's last line; a ref without the script needs nothing."""
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    (tree / "kernels").mkdir()
    shutil.copy2(ROOT / "scripts" / "build_host.py", tree / "scripts" / "build_host.py")
    shutil.copy2(ROOT / "kernels" / "_host.c", tree / "kernels" / "_host.c")
    assert build_host_steps(tree) is None
    assert [p.name for p in (tree / "kernels").glob("_host*.so")]
    (tree / "kernels" / "_host.c").write_text("this is not C\n")
    message = build_host_steps(tree)
    assert message and "error" in message
    assert build_host_steps(tmp_path / "empty") is None


def test_unknown_ref_names_the_flag(snapshot_repo: Path) -> None:
    with pytest.raises(BenchError, match=r"--candidate 'no-such-branch' is not a commit"):
        compare_refs("HEAD", "no-such-branch", [SAMPLE], repo=snapshot_repo)


def test_outside_a_git_checkout(tmp_path) -> None:
    with pytest.raises(BenchError, match="not inside a git checkout"):
        compare_refs("HEAD", "HEAD", [SAMPLE], repo=tmp_path)


def test_missing_cases_dir(tmp_path, snapshot_repo: Path) -> None:
    with pytest.raises(BenchError, match="is not a directory"):
        compare_refs("HEAD", "HEAD", [tmp_path / "nope"], repo=snapshot_repo)


def test_failing_replay_reports_its_last_line(tmp_path, snapshot_repo: Path) -> None:
    with pytest.raises(BenchError, match=r"replay of base-head failed: .*nope") as info:
        compare_refs("HEAD", "HEAD", [SAMPLE], replay_args=["--impl", "nope", "--device", "cpu"], repo=snapshot_repo)
    assert "\n" not in str(info.value)
    assert _git(snapshot_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
