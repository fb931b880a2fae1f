"""What an encode (or a follow) of one segment reports: progress while it runs, then one outcome.

Small frozen records, matched by type, sent as they are from a child process
(:mod:`.workers`) and just as fit to be a remote task's result: a failure is a
value (:class:`Failed`), never an exception crossing the process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    """``done`` frames of ``total`` (``None`` when unknown) so far, at ``fps``."""

    done: int = 0
    total: int | None = None
    fps: float = 0.0


@dataclass(frozen=True)
class Done:
    """The proxy is published at ``proxy``."""

    proxy: Path


@dataclass(frozen=True)
class Failed:
    """No proxy: ``reason`` about ``path``, with the CLI exit ``code`` of that error (see errors.py)."""

    code: int
    path: Path
    reason: str


@dataclass(frozen=True)
class Stopped:
    """Stopped on request before the end; nothing partial was left."""


@dataclass(frozen=True)
class Abandoned:
    """A follow's file was truncated, replaced or deleted (``reason``): its live
    proxy is gone, nothing of it is served; the segment is handled again once complete."""

    reason: str


Outcome = Done | Failed | Stopped | Abandoned
