"""`bench compare-refs`: judge a git ref against another in one command.

Each ref is checked out in its own temporary `git worktree`, its C extension built in place (as an install would),
replayed with `python -m rlebench replay` by the same interpreter with PYTHONPATH set to that worktree (so its own
kernels and replay code run, no venv needed), on the same case sets with the same options; then the two results are
compared like `bench compare`.
The replays run one after the other on this machine: keep it otherwise idle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cases.atomic import atomic_write
from cases.errors import BenchError
from replay.compare import Comparison, Threshold, compare_results
from replay.results import load_results, slug

__all__ = ["RefRun", "build_host_steps", "compare_refs", "resolve_ref", "run_replay_at"]


@dataclass
class RefRun:
    """A ref, the commit it named, and the results file its replay wrote."""

    ref: str
    commit: str
    results_path: Path


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise BenchError(f"cannot run git: {exc.strerror or exc}") from exc


def repo_root(start: str | Path) -> Path:
    """Top directory of the git checkout containing start; BenchError outside one."""
    out = _git(Path(start), "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise BenchError(f"{start} is not inside a git checkout; compare-refs needs the project's git repository")
    return Path(out.stdout.strip())


def resolve_ref(repo: Path, ref: str, flag: str) -> str:
    """The full commit hash a ref names; BenchError naming the flag when it names none."""
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if out.returncode != 0 or not out.stdout.strip():
        raise BenchError(f"{flag} {ref!r} is not a commit in {repo}")
    return out.stdout.strip()


def run_replay_at(
    worktree: Path, cases_dirs: list[Path], replay_args: list[str], results_dir: Path, label: str
) -> Path:
    """Run the worktree's own `python -m rlebench replay` (same interpreter); return its results file."""
    command = [
        sys.executable,
        "-m",
        "rlebench",
        "replay",
        *[a for d in cases_dirs for a in ("--cases-dir", str(d))],
        "--results-dir",
        str(results_dir),
        "--label",
        label,
        "--machine",
        "compare-refs",
        *replay_args,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(worktree)  # the worktree's packages shadow any installed copy of the project
    proc = subprocess.run(command, cwd=worktree, env=env, capture_output=True, text=True)
    found = sorted(results_dir.rglob("*.json"))
    if proc.returncode not in (0, 1) or not found:  # 1 = correctness gate failed, results still written
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        reason = lines[-1].removeprefix("bench: error: ") if lines else f"exit code {proc.returncode}"
        raise BenchError(f"replay of {label} failed: {reason}")
    return found[-1]


def build_host_steps(worktree: Path) -> str | None:
    """Build the worktree's C extension in place (its own `scripts/build_host.py`, by this interpreter), as an
    install would: a worktree is a bare checkout. None when it was built or the ref has none; else why not (the
    compiler's first error line; that ref's `triton` then runs its host steps in Python)."""
    script = worktree / "scripts" / "build_host.py"
    if not script.is_file():
        return None
    proc = subprocess.run([sys.executable, str(script)], cwd=worktree, capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]  # the compiler's first error, not its source excerpt
    return (errors or lines or [f"exit code {proc.returncode}"])[0 if errors else -1]


def _check_commit(run: RefRun, flag: str) -> None:
    """The replay must have run the worktree's code: its results record the commit it ran from."""
    recorded = (load_results(run.results_path).get("environment") or {}).get("commit")
    if recorded != run.commit:
        raise BenchError(
            f"{flag} {run.ref}: the replay ran code from commit {recorded}, not {run.commit[:12]}; is another copy "
            "of rlebench first on sys.path?"
        )


def compare_refs(
    base_ref: str,
    candidate_ref: str,
    cases_dirs: list[Path],
    *,
    replay_args: list[str] | None = None,
    repo: str | Path = ".",
    out_dir: str | Path | None = None,
    fail_on: list[Threshold | str] | None = None,
) -> tuple[Comparison, RefRun, RefRun]:
    """Replay cases_dirs at both refs and compare; results (and nothing else) are kept in out_dir when given."""
    root = repo_root(repo)
    dirs = [Path(d).resolve() for d in cases_dirs]
    for d in dirs:
        if not d.is_dir():
            raise BenchError(f"--cases-dir {d} is not a directory")
    base_commit = resolve_ref(root, base_ref, "--base")
    cand_commit = resolve_ref(root, candidate_ref, "--candidate")
    tmp = Path(tempfile.mkdtemp(prefix="rlebench-compare-refs-"))
    worktrees: list[Path] = []
    build_warnings: list[str] = []
    try:
        runs = []
        for role, ref, commit, flag in (
            ("base", base_ref, base_commit, "--base"),
            ("candidate", candidate_ref, cand_commit, "--candidate"),
        ):
            tree = tmp / role
            added = _git(root, "worktree", "add", "--detach", "--quiet", str(tree), commit)
            if added.returncode != 0:
                raise BenchError(f"{flag} {ref}: git worktree add failed: {added.stderr.strip().splitlines()[-1:]}")
            worktrees.append(tree)
            failed = build_host_steps(tree)
            if failed:
                build_warnings.append(f"{flag} {ref}: kernels/_host.c did not build ({failed}): host steps in Python")
            path = run_replay_at(tree, dirs, list(replay_args or []), tmp / f"results-{role}", f"{role}-{slug(ref)}")
            run = RefRun(ref=ref, commit=commit, results_path=path)
            _check_commit(run, flag)
            runs.append(run)
        base, candidate = (load_results(r.results_path) for r in runs)
        comparison = compare_results(base, candidate, fail_on)
        comparison.warnings += build_warnings
        if out_dir is not None:
            runs = [_keep(r, Path(out_dir), role) for r, role in zip(runs, ("base", "candidate"), strict=True)]
        return comparison, runs[0], runs[1]
    finally:
        for tree in worktrees:
            _git(root, "worktree", "remove", "--force", str(tree))
        _git(root, "worktree", "prune")
        shutil.rmtree(tmp, ignore_errors=True)


def _keep(run: RefRun, out_dir: Path, role: str) -> RefRun:
    """Copy a results file out of the temporary directory (atomically) before it is removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{role}-{slug(run.ref)}-{run.commit[:10]}.json"
    atomic_write(target, json.dumps(load_results(run.results_path), indent=1), what="results")
    return RefRun(ref=run.ref, commit=run.commit, results_path=target)
