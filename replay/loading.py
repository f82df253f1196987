"""Case-set loading for replay: find the case sets, read and validate them, move them to the device once.

Loading never happens inside a timed region: every case is read, checked and copied to the device here,
before the timing engine starts. Without --cases-dir the replay uses the most recently captured set: the
directory directly under ./cases/ whose manifest.json was modified last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cases.errors import BenchError
from kernels.contract import ImageDetections, PostprocessInputs

__all__ = ["LoadedCaseSet", "default_cases_dir", "load_for_replay", "resolve_device"]

MANIFEST_NAME = "manifest.json"


@dataclass
class LoadedCaseSet:
    """One case set ready for timing: device inputs, CPU inputs (for parity reports) and expected outputs."""

    directory: Path
    manifest: dict
    manifest_hash: str | None
    digest: str | None
    case_files: list[str]
    device_inputs: list[PostprocessInputs]
    cpu_inputs: list[PostprocessInputs]
    expected: list[list[ImageDetections]]
    provenance: list[dict]
    bad: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.device_inputs)

    def input_bytes(self, index: int) -> int:
        """Bytes one clone of case `index` occupies on the device."""
        inputs = self.device_inputs[index]
        return sum(t.numel() * t.element_size() for t in (inputs.boxes, inputs.logits, inputs.masks))


def resolve_device(name: str | None) -> torch.device:
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'; BenchError when CUDA is asked for but absent."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BenchError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name} requested but no CUDA GPU is available here (use --device cpu)")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise BenchError(f"--device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def default_cases_dir(root: str | Path = "cases") -> Path:
    """The most recently captured case set: the directory under root whose manifest.json is newest."""
    root = Path(root)
    candidates = [p.parent for p in root.glob(f"*/{MANIFEST_NAME}") if p.is_file()] if root.is_dir() else []
    if not candidates:
        raise BenchError(
            f"no --cases-dir given and no captured case set (a directory with {MANIFEST_NAME}) under {root}/"
        )
    return max(candidates, key=lambda d: (d / MANIFEST_NAME).stat().st_mtime_ns)


def _manifest_hash(directory: Path) -> str | None:
    path = directory / MANIFEST_NAME
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _digest(case_set: object) -> str | None:
    """cases.caseset's digest of the set (manifest + file names and sizes), None when it cannot be taken."""
    try:
        return "sha256:" + case_set.digest()  # type: ignore[attr-defined]
    except (AttributeError, OSError, BenchError):
        return None


def load_for_replay(
    directory: str | Path, device: torch.device, *, max_cases: int | None = None, skip_bad: bool = False
) -> LoadedCaseSet:
    """Read, validate and move one case set to device; BenchError/CaseError with one line on any problem."""
    from cases.caseset import load_case_set

    directory = Path(directory)
    if not directory.exists():
        raise BenchError(f"cases dir {directory} does not exist")
    if not directory.is_dir():
        raise BenchError(f"cases dir {directory} is not a directory")
    if max_cases is not None and max_cases < 1:
        raise BenchError(f"--max-cases must be >= 1, got {max_cases}")
    try:
        case_set = load_case_set(directory, max_cases=max_cases, skip_bad=skip_bad)
    except BenchError:
        raise
    except (OSError, ValueError) as exc:
        raise BenchError(f"cases dir {directory}: {exc}") from exc
    bad = [(str(path), str(message)) for path, message in getattr(case_set, "bad", [])]
    cases = list(case_set.cases)
    if not cases:
        reason = f" ({len(bad)} bad case file(s) skipped)" if bad else ""
        raise BenchError(f"cases dir {directory} holds no usable case files{reason}")
    device_inputs = []
    try:
        for case in cases:
            device_inputs.append(case.inputs.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except torch.cuda.OutOfMemoryError as exc:
        raise BenchError(f"cases dir {directory} does not fit in {device} memory; use --max-cases") from exc
    return LoadedCaseSet(
        directory=directory,
        manifest=dict(getattr(case_set, "manifest", {}) or {}),
        manifest_hash=_manifest_hash(directory),
        digest=_digest(case_set),
        case_files=[Path(case.path).name for case in cases],
        device_inputs=device_inputs,
        cpu_inputs=[case.inputs for case in cases],
        expected=[case.expected for case in cases],
        provenance=[dict(case.provenance) for case in cases],
        bad=bad,
    )
