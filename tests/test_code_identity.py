"""replay/code_identity.py: an implementation's name and the digest of the source files it comes from."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from replay.code_identity import code_identity

_BASE = "class Base:\n    def __call__(self, inputs):\n        return {result}\n"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A plug-in package `plug` whose class derives from a base in another directory (`base_dir/basemod.py`)."""
    (tmp_path / "base_dir").mkdir()
    (tmp_path / "base_dir" / "basemod.py").write_text(_BASE.format(result="[]"))
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "impl.py").write_text("from basemod import Base\n\n\nclass Impl(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "base_dir"))
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    yield tmp_path
    for name in ("impl", "basemod"):
        sys.modules.pop(name, None)


def _load():
    for name in ("impl", "basemod"):
        sys.modules.pop(name, None)
    return importlib.import_module("impl").Impl()


def test_digest_covers_every_directory_of_the_type_and_changes_with_them(plugin: Path) -> None:
    first = code_identity(_load())
    assert first["name"] == "impl.Impl" and first["files"] == 2 and first["digest"].startswith("sha256:")
    assert code_identity(_load()) == first  # the same files: the same digest
    (plugin / "base_dir" / "basemod.py").write_text(_BASE.format(result="None"))
    changed_base = code_identity(_load())
    assert changed_base["digest"] != first["digest"]
    (plugin / "plug" / "helper.py").write_text("X = 1\n")  # a new file next to the plug-in counts too
    with_helper = code_identity(_load())
    assert with_helper["files"] == 3 and with_helper["digest"] != changed_base["digest"]
    (plugin / "plug" / "_ext.c").write_text("int f(void) { return 1; }\n")  # an extension's C source counts
    (plugin / "plug" / "_ext.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")  # its build does not
    (plugin / "plug" / "notes.txt").write_text("not a source")
    with_c = code_identity(_load())
    assert with_c["files"] == 4 and with_c["digest"] != with_helper["digest"]
    (plugin / "plug" / "_ext.c").write_text("int f(void) { return 2; }\n")
    assert code_identity(_load())["digest"] != with_c["digest"]


def test_functions_builtins_and_the_projects_implementations() -> None:
    from kernels.reference import postprocess_reference

    ref = code_identity(postprocess_reference)
    assert ref["name"] == "kernels.reference.postprocess_reference" and ref["digest"].startswith("sha256:")
    kernels = Path(sys.modules["kernels.reference"].__file__).parent
    assert ref["files"] == len(list(kernels.glob("*.py"))) + 1  # and kernels/_host.c
    assert code_identity({}) == {"name": "builtins.dict", "digest": None, "files": 0}  # nothing of the project's
