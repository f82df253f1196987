"""What code an implementation ran: its qualified name and a digest of the source files around it.

A results file names its commit, but a commit does not say what a plug-in (`--impl module:attr`) is, and a copy
of the tree without its own git history (a lent GPU machine, a container) may report a stale one. So every run
also records, per implementation, the module and name of its type (or function) and a sha256 over the source
files (Python, and C / C++ / CUDA of extension modules) of the directories its code comes from: the directory
of every module in its type's method resolution order that is neither part of Python nor one of the libraries
it runs on. Two runs with equal digests ran the same files
there (files elsewhere, e.g. a module those import from another directory, are not covered).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
from pathlib import Path
from typing import Any

__all__ = ["code_identity"]

_LIBRARIES = frozenset({"builtins", "torch", "numpy", "triton", "safetensors", "typing", "abc", "collections"})
# Source files of a directory: Python, and C / C++ / CUDA sources of extension modules built from it (e.g.
# kernels/_host.c: the built module itself is not hashed, its source is).
_SOURCE_SUFFIXES = frozenset({".py", ".c", ".h", ".cc", ".cpp", ".cu"})


def _library_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple(Path(paths[key]).resolve() for key in ("stdlib", "platstdlib") if key in paths)


def _source_dirs(target: Any) -> list[Path]:
    """Directories of the modules that define target (a class: every class of its MRO) outside Python and the
    libraries."""
    classes = inspect.getmro(target) if inspect.isclass(target) else (target,)
    roots = _library_roots()
    dirs: list[Path] = []
    for obj in classes:
        name = getattr(obj, "__module__", None) or ""
        if name.split(".")[0] in _LIBRARIES:
            continue
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        directory = Path(file).resolve().parent
        if any(directory.is_relative_to(root) for root in roots) or directory in dirs:
            continue
        dirs.append(directory)
    return dirs


def code_identity(impl: Any) -> dict[str, Any]:
    """{"name": module.qualname of the implementation's type (or function), "digest": "sha256:..." over the source
    files of its source directories (each file's name and bytes, directories in MRO order, files sorted) or None
    when there are none, "files": how many}."""
    target = impl if inspect.isfunction(impl) or inspect.isclass(impl) else type(impl)
    digest = hashlib.sha256()
    count = 0
    for directory in _source_dirs(target):
        for path in sorted(p for p in directory.iterdir() if p.suffix in _SOURCE_SUFFIXES and p.is_file()):
            digest.update(f"{directory.name}/{path.name}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
            count += 1
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
    return {"name": name, "digest": f"sha256:{digest.hexdigest()}" if count else None, "files": count}
