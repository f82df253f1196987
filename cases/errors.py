"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class BenchError(Exception):
    """A problem with user input (a file, a flag, a device): message is one line, no traceback shown."""


class CaseError(BenchError):
    """A case file or case set that cannot be read; the message names the file and the problem."""
