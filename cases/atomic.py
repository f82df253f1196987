"""Atomic file writes shared by everything that writes files (cases, manifests, videos, results, plots).

A file is written to a hidden temporary name in its own directory, flushed to disk, then renamed over
the target (or hard-linked to it when it must not replace an existing file), so a reader sees either
nothing, the old file or the complete new one, and a failure leaves nothing behind. The temporary file
is created with mode 0o666 minus the umask, like any ordinary file (mkstemp would make it owner-only).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cases.errors import BenchError

__all__ = ["AlreadyExists", "WriteError", "atomic_write"]


class AlreadyExists(BenchError):
    """atomic_write(..., replace=False) found the target taken; nothing was changed."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists and is never overwritten")
        self.path = path


class WriteError(BenchError):
    """A file could not be written; reason is the operating system's word for it."""

    def __init__(self, path: Path, reason: str, what: str) -> None:
        super().__init__(f"cannot write {what} {path}: {reason}")
        self.path = path
        self.reason = reason


def atomic_write(
    path: str | Path, content: bytes | str | Callable[[Path], None], *, replace: bool = True, what: str = "file"
) -> Path:
    """Atomically create (or replace) path with content: bytes, text, or a function that writes to a given path.

    With replace=False an existing path is never touched (AlreadyExists instead). OSError becomes WriteError
    naming the file; other exceptions (a failing writer, Ctrl-C) propagate after the temporary is removed.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise WriteError(path, str(exc.strerror or exc), what) from None
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except FileExistsError:
        raise AlreadyExists(path) from None
    except OSError as exc:
        raise WriteError(path, str(exc.strerror or exc), what) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _publish_new(tmp: Path, target: Path) -> None:
    """Give tmp the name target unless target exists (FileExistsError), atomically.

    A hard link never replaces a file; where the filesystem has no hard links, the name is reserved with
    O_EXCL first and then atomically replaced by the finished file (only ever our own empty placeholder).
    """
    try:
        os.link(tmp, target)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # no hard links here (e.g. some network or FAT filesystems)
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.replace(tmp, target)
