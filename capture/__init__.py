"""Capture: decode a video, run a model, run post-processing, and record each call as a case file.

The public Python API for recording a user's own post-processing lives in capture.recorder
(`recording` context manager, `recorded` decorator); `bench capture` is in capture.cli.
"""

from __future__ import annotations

__all__ = ["CaseRecorder", "recorded", "recording"]


def __getattr__(name: str) -> object:
    # Imported lazily so `import capture` stays cheap for the CLI dispatcher.
    if name in __all__:
        from capture import recorder

        return getattr(recorder, name)
    raise AttributeError(name)
