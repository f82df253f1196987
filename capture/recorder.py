"""The recorder: one case file per post-processing call plus a manifest rewritten after every case.

Used by `bench capture`, and public for users who want to record calls where they really happen in
their own pipeline:

    from capture import recording, recorded

    with recording("my_cases", max_cases=50) as rec:
        postprocess = rec.wrap(my_postprocess)      # my_postprocess(inputs) -> list[ImageDetections]
        for frame in video:
            detections = postprocess(run_model(frame))

    @recorded("my_cases", max_cases=50, overwrite=True)
    def my_postprocess(inputs): ...

Calls whose arguments/results are not in the contract's types can be adapted with `to_inputs` and
`to_detections`. Each case is written atomically and the manifest is rewritten (atomically) right
after it, with SIGINT/SIGTERM deferred in between, so an interrupted run leaves only valid cases and a
manifest that lists exactly them; a resumed run also adopts a valid case whose manifest update was lost.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cases.caseset import MANIFEST_NAME, case_path, list_case_files, manifest_entry, read_manifest, write_manifest
from cases.errors import BenchError, CaseError
from cases.format import read_case, write_case
from kernels.contract import ImageDetections, PostprocessInputs

__all__ = ["CaseRecorder", "check_directory", "recording", "recorded", "library_versions", "utc_now"]

_IDENTITY_KEYS = ("source", "model")  # a resumed set must come from the same source and model


def utc_now() -> str:
    """ISO 8601 UTC time, seconds resolution."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a capture (missing optional ones are left out)."""
    import importlib.metadata as md

    versions = {}
    for dist in ("rlebench", "torch", "triton", "numpy", "av", "onnxruntime", "opencv-python-headless", "rfdetr"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    return versions


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, so a case and its manifest entry are written together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending[:1]:
            signal.raise_signal(signum)


def check_directory(directory: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> None:
    """Raise BenchError when a case set cannot be written to directory with these flags; changes nothing.

    Lets capture refuse a bad --cases-dir before it decodes or computes anything.
    """
    directory = Path(directory)
    if overwrite and resume:
        raise BenchError("--overwrite and --resume exclude each other")
    if directory.exists():
        if not directory.is_dir():
            raise BenchError(f"--cases-dir {directory} exists and is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise BenchError(f"--cases-dir {directory} is not writable")
        entries = [p for p in directory.iterdir() if not p.name.startswith(".")]
        if entries and not (overwrite or resume):
            raise BenchError(
                f"--cases-dir {directory} is not empty; pass --overwrite to replace its cases "
                "or --resume to add to them"
            )
        return
    parent = directory.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"cannot create --cases-dir {directory}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BenchError(f"cannot create --cases-dir {directory}: {parent} is not writable")


def _prepare_directory(directory: Path, *, overwrite: bool, resume: bool) -> None:
    """Create the directory or check it is empty/allowed; --overwrite removes our files (only)."""
    check_directory(directory, overwrite=overwrite, resume=resume)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create --cases-dir {directory}: {exc.strerror or exc}") from None
    if overwrite:
        ours = [*list_case_files(directory), directory / MANIFEST_NAME]
        ours += [p for p in directory.iterdir() if p.name.startswith((".case_", ".manifest")) and p.suffix == ".tmp"]
        for path in ours:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise BenchError(f"--overwrite: cannot remove {path}: {exc.strerror or exc}") from None


class CaseRecorder:
    """Writes case_NNNNNN.safetensors files and manifest.json into one directory.

    manifest_fields go into the manifest as-is (source, model, backend, impl, device, ...); provenance is
    the per-case provenance every case shares, to which record() adds its own fields.
    """

    def __init__(
        self,
        cases_dir: str | os.PathLike,
        *,
        overwrite: bool = False,
        resume: bool = False,
        manifest_fields: dict | None = None,
        provenance: dict | None = None,
        started: float | None = None,
    ) -> None:
        self.directory = Path(cases_dir)
        _prepare_directory(self.directory, overwrite=overwrite, resume=resume)
        self.provenance = dict(provenance or {})
        self._started = time.perf_counter() if started is None else started  # a time.perf_counter() value
        self._elapsed_before = 0.0
        self._frames_before = 0
        self.frames_read = 0
        self.manifest: dict[str, Any] = {"created": utc_now(), "versions": library_versions()}
        self.manifest.update(manifest_fields or {})
        self.manifest["cases"] = []
        if resume:
            self._adopt_existing()
        self._write_manifest()

    # -- state -------------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Cases in the set (including those a resumed run found)."""
        return len(self.manifest["cases"])

    @property
    def entries(self) -> list[dict]:
        return self.manifest["cases"]

    def _adopt_existing(self) -> None:
        """--resume: keep the manifest's cases, adopt valid unlisted case files, refuse a different source."""
        old: dict = {}
        if (self.directory / MANIFEST_NAME).exists():
            old = read_manifest(self.directory)
            for key in _IDENTITY_KEYS:
                if key in old and key in self.manifest and old[key] != self.manifest[key]:
                    raise BenchError(
                        f"--resume: {self.directory} was captured with {key} {old[key]!r}, this run uses "
                        f"{self.manifest[key]!r}; use another --cases-dir or --overwrite"
                    )
        entries = list(old.get("cases", []))
        listed = {e["file"] for e in entries}
        for path in list_case_files(self.directory):
            if path.name in listed:
                continue
            try:
                case = read_case(path)
            except CaseError:
                raise BenchError(f"--resume: {path} is not a valid case; remove it or use --overwrite") from None
            entries.append(manifest_entry(path, case.inputs, case.expected, **_entry_extra(case.provenance)))
        on_disk = {p.name for p in list_case_files(self.directory)}
        missing = [e["file"] for e in entries if e["file"] not in on_disk]
        if missing:
            raise BenchError(f"--resume: {self.directory / missing[0]} is listed in manifest.json but missing")
        entries.sort(key=lambda e: e["file"])
        self.manifest["cases"] = entries
        self.manifest["created"] = old.get("created", self.manifest["created"])
        self._elapsed_before = float(old.get("elapsed", 0.0) or 0.0)
        self._frames_before = int(old.get("frames_read", 0) or 0)

    def next_index(self) -> int:
        files = list_case_files(self.directory)
        return int(files[-1].name[5:-12]) + 1 if files else 0

    # -- writing -----------------------------------------------------------------------------------------

    def record(
        self,
        inputs: PostprocessInputs,
        expected: list[ImageDetections],
        provenance: dict | None = None,
        **entry_fields: Any,
    ) -> Path:
        """Write one case (atomically) and the updated manifest; returns the case's path."""
        path = case_path(self.directory, self.next_index())
        full = {**self.provenance, **(provenance or {}), "time": utc_now()}
        entry = manifest_entry(path, inputs, expected, **entry_fields)
        with _signals_deferred():
            try:
                write_case(path, inputs, expected, full)
            except CaseError as exc:
                raise BenchError(str(exc)) from None
            self.entries.append(entry)
            self._write_manifest()
        return path

    def update(self, **fields: Any) -> None:
        """Set manifest fields (e.g. complete, note) and rewrite it."""
        self.manifest.update(fields)
        self._write_manifest()

    def _write_manifest(self) -> None:
        elapsed = self._elapsed_before + (time.perf_counter() - self._started)
        frames = self._frames_before + self.frames_read
        self.manifest["updated"] = utc_now()
        self.manifest["elapsed"] = round(elapsed, 3)
        self.manifest["frames_read"] = frames
        self.manifest["fps"] = round(frames / elapsed, 3) if elapsed > 0 else 0.0
        self.manifest["count"] = len(self.entries)
        try:
            write_manifest(self.directory, self.manifest)
        except CaseError as exc:
            raise BenchError(str(exc)) from None

    # -- the Python API ---------------------------------------------------------------------------------

    def wrap(
        self,
        fn: Callable[..., Any],
        *,
        max_cases: int | None = None,
        every: int = 1,
        to_inputs: Callable[..., PostprocessInputs] | None = None,
        to_detections: Callable[[Any], list[ImageDetections]] | None = None,
    ) -> Callable[..., Any]:
        """fn, recording every `every`-th call until the set holds max_cases cases; results pass through.

        to_inputs(*args, **kwargs) builds the contract inputs from fn's arguments (default: the first
        argument is a PostprocessInputs); to_detections(result) builds list[ImageDetections] (default: the
        result already is one).
        """
        if every < 1:
            raise ValueError("every must be >= 1")
        calls = 0
        impl_name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            result = fn(*args, **kwargs)
            index = calls
            calls += 1
            self.frames_read += 1
            if index % every or (max_cases is not None and self.count >= max_cases):
                return result
            inputs = to_inputs(*args, **kwargs) if to_inputs else _first_inputs(args, kwargs)
            detections = to_detections(result) if to_detections else result
            if not isinstance(detections, list) or not all(isinstance(d, ImageDetections) for d in detections):
                raise TypeError(
                    f"{impl_name} returned {type(detections).__name__}; pass to_detections= to build "
                    "list[ImageDetections] from it"
                )
            self.record(inputs, detections, {"impl": impl_name, "call_index": index}, call_index=index)
            return result

        return wrapper


def _first_inputs(args: tuple, kwargs: dict) -> PostprocessInputs:
    candidates = [*args, *kwargs.values()]
    for value in candidates:
        if isinstance(value, PostprocessInputs):
            return value
    raise TypeError("no PostprocessInputs argument in the recorded call; pass to_inputs= to build one")


def _entry_extra(provenance: dict) -> dict:
    extra = {}
    if "frame_index" in provenance:
        extra["frame_index"] = provenance["frame_index"]
    return extra


@contextlib.contextmanager
def recording(
    cases_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    source: str = "user pipeline",
    **manifest_fields: Any,
) -> Iterator[CaseRecorder]:
    """Context manager yielding a CaseRecorder; on exit the manifest records whether the block completed."""
    recorder = CaseRecorder(
        cases_dir,
        overwrite=overwrite,
        resume=resume,
        manifest_fields={"source": source, **manifest_fields},
        provenance={"source": source, "versions": library_versions(), **manifest_fields},
    )
    try:
        yield recorder
    except BaseException as exc:
        recorder.update(complete=False, note=f"stopped by {type(exc).__name__}")
        raise
    recorder.update(complete=True)


def recorded(
    cases_dir: str | os.PathLike,
    *,
    max_cases: int | None = None,
    every: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    to_inputs: Callable[..., PostprocessInputs] | None = None,
    to_detections: Callable[[Any], list[ImageDetections]] | None = None,
    **manifest_fields: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator recording calls of a post-processing function; the directory is opened on the first call.

    The manifest is rewritten after every recorded case, so nothing needs closing; `fn.recorder` is the
    CaseRecorder once a call has happened.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        state: dict[str, Any] = {}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if "wrapped" not in state:
                recorder = CaseRecorder(
                    cases_dir,
                    overwrite=overwrite,
                    resume=resume,
                    manifest_fields={"source": "user pipeline", **manifest_fields},
                    provenance={"source": "user pipeline", "versions": library_versions(), **manifest_fields},
                )
                state["wrapped"] = recorder.wrap(
                    fn, max_cases=max_cases, every=every, to_inputs=to_inputs, to_detections=to_detections
                )
                wrapper.recorder = recorder  # type: ignore[attr-defined]
            return state["wrapped"](*args, **kwargs)

        wrapper.recorder = None  # type: ignore[attr-defined]
        return wrapper

    return decorate
