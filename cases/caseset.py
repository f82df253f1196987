"""A case set: a directory of case files plus manifest.json (cases/FORMAT.md, "Case set directory").

Lists, loads and checks the set as a whole (manifest consistent with the files on disk), writes the
manifest atomically, and hashes the set so results can name exactly what they were measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cases.errors import CaseError
from cases.format import SCHEMA_VERSION, Case, atomic_write_bytes, read_case
from kernels.contract import ImageDetections, PostprocessInputs

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "CaseSet",
    "case_path",
    "list_case_files",
    "manifest_entry",
    "read_manifest",
    "write_manifest",
    "load_case_set",
    "case_set_digest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "rlebench.caseset"
_CASE_FILE = re.compile(r"^case_(\d{6,})\.safetensors$")


@dataclass
class CaseSet:
    """The loaded set: manifest ({} when the directory has none), good cases in file order, bad (path, message)."""

    directory: Path
    manifest: dict
    cases: list[Case] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def digest(self) -> str:
        """case_set_digest of the directory (manifest + file names and sizes)."""
        return case_set_digest(self.directory)


def case_path(directory: str | os.PathLike, index: int) -> Path:
    """Path of case number index: case_000000.safetensors, case_000001.safetensors, ..."""
    if index < 0:
        raise ValueError(f"case index must be >= 0, got {index}")
    return Path(directory) / f"case_{index:06d}.safetensors"


def _check_directory(directory: Path) -> None:
    if not directory.exists():
        raise CaseError(f"{directory}: case directory does not exist")
    if not directory.is_dir():
        raise CaseError(f"{directory}: not a directory")


def list_case_files(directory: str | os.PathLike) -> list[Path]:
    """The case files of a directory (case_<digits>.safetensors), sorted by index."""
    directory = Path(directory)
    _check_directory(directory)
    found = []
    for entry in directory.iterdir():
        match = _CASE_FILE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def manifest_entry(
    path: str | os.PathLike, inputs: PostprocessInputs, expected: list[ImageDetections], **extra: Any
) -> dict:
    """The manifest's `cases` entry for one case file (file, batch, detections, original_size, plus extra)."""
    entry: dict[str, Any] = {
        "file": Path(path).name,
        "batch": inputs.batch_size,
        "detections": [len(det) for det in expected],
        "original_size": [list(meta.original_size) for meta in inputs.preprocess],
    }
    entry.update(extra)
    return entry


def _validate_manifest(manifest: Any, where: Path) -> dict:
    """Check the manifest's own structure (not yet against the files); returns it."""
    if not isinstance(manifest, dict):
        raise CaseError(f"{where}: manifest must be a JSON object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CaseError(f"{where}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CaseError(f"{where}: schema_version {version}, this rlebench reads {SCHEMA_VERSION}")
    entries = manifest.get("cases")
    if not isinstance(entries, list):
        raise CaseError(f"{where}: 'cases' must be a list")
    count = manifest.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count != len(entries):
        raise CaseError(f"{where}: count {count!r} does not match the {len(entries)} entries of 'cases'")
    names = []
    for i, entry in enumerate(entries):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _CASE_FILE.match(name):
            raise CaseError(f"{where}: cases[{i}] needs a 'file' named case_NNNNNN.safetensors, got {name!r}")
        names.append(name)
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise CaseError(f"{where}: {duplicate} is listed twice")
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
    """Read and check <directory>/manifest.json; raises CaseError when it is missing or malformed."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise CaseError(f"{path}: no such file")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CaseError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise CaseError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except OSError as err:
        raise CaseError(f"{path}: cannot read ({err.strerror or err})") from None
    return _validate_manifest(manifest, path)


def write_manifest(directory: str | os.PathLike, manifest: dict) -> None:
    """Write <directory>/manifest.json atomically; fills format, schema_version and count when absent.

    Times (created/updated) are the caller's to set, so deterministic sets stay byte-identical.
    """
    path = Path(directory) / MANIFEST_NAME
    full = dict(manifest)
    full.setdefault("format", MANIFEST_FORMAT)
    full.setdefault("schema_version", SCHEMA_VERSION)
    if isinstance(full.get("cases"), list):
        full.setdefault("count", len(full["cases"]))
    _validate_manifest(full, path)
    try:
        text = json.dumps(full, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise CaseError(f"{path}: manifest is not JSON-serialisable: {err}") from None
    atomic_write_bytes(path, text.encode("utf-8"))


def _check_against_manifest(case: Case, entry: dict) -> None:
    """Where the manifest states batch or detections, they must match the case file."""
    batch = entry.get("batch")
    if batch is not None and batch != case.inputs.batch_size:
        raise CaseError(f"{case.path}: batch {case.inputs.batch_size}, manifest.json says {batch}")
    detections = entry.get("detections")
    actual = [len(det) for det in case.expected]
    if detections is not None and detections != actual:
        raise CaseError(f"{case.path}: detections {actual}, manifest.json says {detections}")


def load_case_set(directory: str | os.PathLike, max_cases: int | None = None, skip_bad: bool = False) -> CaseSet:
    """Load and validate a case set; a bad case raises CaseError, or with skip_bad is recorded in .bad.

    max_cases keeps the first cases in file order. The manifest must list exactly the case files on
    disk; a directory without manifest.json loads every case file with manifest {}.
    """
    directory = Path(directory)
    files = list_case_files(directory)
    if not files:
        raise CaseError(f"{directory}: no case files (case_NNNNNN.safetensors) in this directory")
    if max_cases is not None and max_cases < 1:
        raise CaseError(f"max_cases must be >= 1, got {max_cases}")
    manifest: dict = {}
    entries: dict[str, dict] = {}
    bad: list[tuple[Path, str]] = []
    if (directory / MANIFEST_NAME).exists():
        manifest = read_manifest(directory)
        entries = {entry["file"]: entry for entry in manifest["cases"]}
        on_disk = {path.name for path in files}
        missing = sorted(set(entries) - on_disk)
        unlisted = sorted(on_disk - set(entries))
        problems = [(directory / name, "listed in manifest.json but missing") for name in missing]
        problems += [(directory / name, "not listed in manifest.json") for name in unlisted]
        if problems and not skip_bad:
            path, message = problems[0]
            raise CaseError(f"{path}: {message}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        bad.extend(problems)
        files = [path for path in files if path.name in entries]
    cases: list[Case] = []
    for path in files:
        if max_cases is not None and len(cases) >= max_cases:
            break
        try:
            case = read_case(path)
            if path.name in entries:
                _check_against_manifest(case, entries[path.name])
        except CaseError as err:
            if not skip_bad:
                raise
            bad.append((path, str(err)))
            continue
        cases.append(case)
    return CaseSet(directory=directory, manifest=manifest, cases=cases, bad=bad)


def case_set_digest(directory: str | os.PathLike) -> str:
    """SHA-256 (hex) over the canonical manifest JSON and each case file's name and size, in file order."""
    directory = Path(directory)
    files = list_case_files(directory)
    manifest = read_manifest(directory) if (directory / MANIFEST_NAME).exists() else {}
    digest = hashlib.sha256()
    digest.update(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for path in files:
        digest.update(f"\n{path.name}\t{path.stat().st_size}".encode())
    return digest.hexdigest()
