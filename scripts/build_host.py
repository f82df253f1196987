"""Build kernels/_host.c in place for a checkout that is not pip-installed (the device tool's copy of the tree).

`pip install -e .` builds the same module (setup.py); this compiles it with the C compiler
and flags of the running Python (sysconfig), so that `PYTHONPATH=. python3 -m rlebench ...` finds it. Prints the
module's path; exits non-zero with the compiler's message where the build fails.
Run from anywhere: `python3 scripts/build_host.py`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    kernels = Path(__file__).resolve().parent.parent / "kernels"
    target = kernels / ("_host" + sysconfig.get_config_var("EXT_SUFFIX"))
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler, "-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
        str(kernels / "_host.c"), "-o", str(target),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"build_host: {shlex.join(command)} failed:\n{done.stderr.strip()}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
