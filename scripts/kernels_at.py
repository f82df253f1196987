"""Earlier commits' kernels as importable copies, for side-by-side runs on a machine without the git history.

`python scripts/kernels_at.py DIR REF [REF ...]` writes, per ref, `DIR/kernels_<sha>/` (`kernels/` as of that
commit, its imports of `kernels.` renamed to the copy) and `DIR/at_<sha>.py` with `Triton`, that commit's
`TritonPostprocess` as a replay plug-in (made with no arguments, on CUDA), where <sha> is the commit's first 7
hex digits. Carry DIR to the GPU machine, put it on PYTHONPATH, and compare in one run, e.g.
`bench replay --impl reference,triton,at_b8f4201:Triton ...`,
`scripts/gpu_graph_time.py old:kernels_b8f4201.triton_postprocess: new:kernels.triton_postprocess: ...`,
`scripts/gpu_triton_check.py --cases ... --baseline kernels_b8f4201.triton_postprocess`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

_PLUGIN = '''"""kernels/ as of commit {commit}: its TritonPostprocess as a replay plug-in (scripts/kernels_at.py)."""

from kernels_{sha}.triton_postprocess import TritonPostprocess


class Triton(TritonPostprocess):
    name = "triton@{sha}"

    def __init__(self, device="cuda"):
        super().__init__(device)
'''


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"kernels_at: git {' '.join(args)}: {out.stderr.strip().splitlines()[-1]}")
    return out.stdout


def snapshot(repo: Path, ref: str, target: Path) -> str:
    """kernels/ of `ref` into target/kernels_<sha>/ and its plug-in into target/at_<sha>.py; returns <sha>."""
    commit = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    sha = commit[:7]
    package = target / f"kernels_{sha}"
    package.mkdir(parents=True, exist_ok=True)
    for path in _git(repo, "ls-tree", "--name-only", commit, "kernels/").split():
        if path.endswith(".py"):
            text = _git(repo, "show", f"{commit}:{path}")
            for word in ("from", "import"):
                text = text.replace(f"{word} kernels.", f"{word} kernels_{sha}.")
            (package / Path(path).name).write_text(text)
    (target / f"at_{sha}.py").write_text(_PLUGIN.format(commit=commit, sha=sha))
    return sha


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="directory for the copies (put it on PYTHONPATH)")
    parser.add_argument("refs", nargs="+", help="git refs (commits, branches, tags)")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    for ref in args.refs:
        sha = snapshot(repo, ref, args.target)
        print(f"{ref}: kernels_{sha}.triton_postprocess, at_{sha}:Triton")
    return 0


if __name__ == "__main__":
    sys.exit(main())
