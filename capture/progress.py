"""Progress bar for capture: frames read, frames/s and captures so far (stderr, only on a terminal)."""

from __future__ import annotations

import sys
from types import TracebackType


class CaptureProgress:
    """A tqdm bar over frames with a `captured=N` postfix; silent when disabled or not a TTY."""

    def __init__(self, total: int | None, *, enabled: bool = True, initial_captures: int = 0) -> None:
        self.captures = initial_captures
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", desc="capture", dynamic_ncols=True, file=sys.stderr)
            self._bar.set_postfix(captured=self.captures)

    def advance(self, frames: int, captures: int) -> None:
        """Count frames read and cases written since the last call."""
        self.captures += captures
        if self._bar is not None:
            self._bar.set_postfix(captured=self.captures, refresh=False)
            self._bar.update(frames)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> CaptureProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
