"""When is a recording segment complete? Pure logic, fed with what the watcher sees.

A recorder keeps a segment open while it writes it and closes it at the end,
so where file events report closes (inotify's close-write, or a rename into
the folder) a segment we saw being written is complete once its writer closed
it and nothing wrote to it for ``quiet`` seconds after: a recorder that pauses
mid-segment is never mistaken for a finished one. Where close events are not
available (network folders, whose remote writes raise no local events;
polling; macOS and Windows, whose watchdog backends report no closes) and for
segments that were already there when we started, a segment is complete once
its size and mtime stayed unchanged for ``settle`` seconds; one whose mtime is
already older than that is complete at once.

:class:`CompletenessDetector` holds no thread, watches nothing and never
sleeps: the watcher feeds it file events (:meth:`~CompletenessDetector.written`,
:meth:`~CompletenessDetector.closed`, :meth:`~CompletenessDetector.gone`),
folder listings and ticks (:meth:`~CompletenessDetector.check`); its clocks and
stat function are arguments, so tests drive it with fakes. Each call returns
what changed as a list of small frozen records matched by type
(:class:`Writing`, :class:`Complete`, :class:`Gone`, :class:`FolderUnavailable`,
:class:`FolderBack`). A consumer ignores the kinds it does not know. A segment
is reported complete once per content (size and mtime): closed again
unchanged, or after its encode failed, it is not reported again until it changes.

:class:`Writing` comes first, once per stretch of writing, for a segment seen
being written: a write event, or a size or mtime that changed between two
looks. A segment merely found in a listing is not reported as written until it
is seen to change, so one already complete when the watcher started (however
recent its mtime) is never taken for one being recorded; one half written then
is reported at its next write, in time to be followed from its start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileState:
    """What tells one content of a segment from another without reading it."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_size, st.st_mtime_ns)


def file_state(path: Path) -> FileState:
    """Stat ``path`` (I/O; raises ``OSError`` when it is gone)."""
    return FileState.of(os.stat(path))


@dataclass(frozen=True)
class Writing:
    """``path`` is being written (``state`` is what was seen): it may be followed
    while it grows; its :class:`Complete` comes when the writer is done."""

    path: Path
    state: FileState


@dataclass(frozen=True)
class Complete:
    """``path`` is complete with content ``state``: make its proxy."""

    path: Path
    state: FileState

    @property
    def last_write(self) -> float:
        """Wall time of its last write: how late a proxy is is measured from here."""
        return self.state.mtime_ns / 1e9


@dataclass(frozen=True)
class Gone:
    """``path`` is no longer there (``reason`` says why): forget what was planned for it.

    ``was_complete``: it had been reported :class:`Complete` (else it was still pending).
    """

    path: Path
    reason: str
    was_complete: bool


@dataclass(frozen=True)
class FolderUnavailable:
    """``folder`` could not be listed (reported once until it is back)."""

    folder: Path
    reason: str


@dataclass(frozen=True)
class FolderBack:
    """``folder`` can be listed again: its segments are judged afresh."""

    folder: Path


Change = Writing | Complete | Gone | FolderUnavailable | FolderBack


@dataclass
class _Pending:
    """A segment not yet complete (or not yet known to be)."""

    state: FileState
    changed_at: float  # clock time its state last changed
    witnessed: bool = False  # seen being written by an event source that reports closes: must be closed
    closed_at: float | None = None
    announced: bool = False  # reported as Writing in this stretch of writing


class CompletenessDetector:
    """Decides when each segment it is told about is complete.

    ``close_events`` says whether the events fed to :meth:`written` come from
    a source that also reports closes (inotify); when it is false a write just
    restarts the ``settle`` clock. ``clock`` is monotonic seconds (durations),
    ``wall_clock`` is the time of day (compared with mtimes), ``stat`` gives a
    path's :class:`FileState` or raises ``OSError``.
    """

    def __init__(
        self,
        settle: float = 5.0,
        quiet: float = 0.5,
        *,
        close_events: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stat: Callable[[Path], FileState] = file_state,
    ) -> None:
        self.settle = settle
        self.quiet = quiet
        self.close_events = close_events
        self._clock = clock
        self._wall_clock = wall_clock
        self._stat = stat
        self._pending: dict[Path, _Pending] = {}
        self._reported: dict[Path, FileState] = {}  # last content reported complete
        self._missing: set[Path] = set()

    @property
    def pending(self) -> Collection[Path]:
        """Segments not complete yet: being written, or not settled."""
        return self._pending.keys()

    # -- what the watcher saw -------------------------------------------------------

    def written(self, path: Path) -> list[Change]:
        """A file event says ``path`` was created or written to (stats it: the
        quiet and settle times count from this write, not from the next check)."""
        try:
            state = self._stat(path)
        except OSError:
            return []  # already gone: its deletion event or the next check says so
        now = self._clock()
        pending = self._pending.setdefault(path, _Pending(state, now))
        pending.state, pending.changed_at = state, now
        pending.witnessed = self.close_events
        pending.closed_at = None
        return self._announce(path, pending)

    def closed(self, path: Path) -> list[Change]:
        """A file event says the writer closed ``path`` (or renamed it into the folder)."""
        pending = self._pending.get(path)
        if pending is None:
            try:
                state = self._stat(path)
            except OSError:
                return []
            if self._reported.get(path) == state:
                return []  # closed again without a change (e.g. opened for writing, not written)
            pending = self._pending[path] = _Pending(state, self._clock())
        pending.closed_at = self._clock()
        return []

    def gone(self, path: Path) -> list[Change]:
        """A file event says ``path`` was deleted or renamed away."""
        return self._forget(path, "deleted")

    def scanned(self, folder: Path, listing: Mapping[Path, FileState]) -> list[Change]:
        """A listing of ``folder``'s segments: new ones and new contents become
        pending, known ones that are absent are gone."""
        changes: list[Change] = []
        if folder in self._missing:
            self._missing.discard(folder)
            changes.append(FolderBack(folder))
        for path in [p for p in (*self._pending, *self._reported) if p.parent == folder and p not in listing]:
            changes += self._forget(path, "deleted")
        now, wall = self._clock(), self._wall_clock()
        for path, state in listing.items():
            if path in self._pending or self._reported.get(path) == state:
                continue
            # Unchanged since long enough ago (by its mtime) counts as settled already.
            age = max(0.0, wall - state.mtime_ns / 1e9)
            pending = self._pending[path] = _Pending(state, now - min(age, self.settle))
            if path in self._reported:  # changed since it was complete: written again
                changes += self._announce(path, pending)
        return changes

    def unavailable(self, folder: Path, reason: str) -> list[Change]:
        """``folder`` could not be listed: its segments are gone until it is back."""
        if folder in self._missing:
            return []
        self._missing.add(folder)
        changes: list[Change] = [FolderUnavailable(folder, reason)]
        for path in [p for p in {*self._pending, *self._reported} if p.parent == folder]:
            changes += self._forget(path, "its folder disappeared")
        return changes

    def check(self) -> list[Change]:
        """Stat the pending segments (I/O through ``stat``) and report those now complete."""
        now = self._clock()
        changes: list[Change] = []
        for path, p in list(self._pending.items()):
            try:
                state = self._stat(path)
            except OSError:
                changes += self._forget(path, "deleted")
                continue
            if state != p.state:
                p.state, p.changed_at = state, now
                changes += self._announce(path, p)
                continue
            if p.witnessed:
                complete = p.closed_at is not None and now - max(p.closed_at, p.changed_at) >= self.quiet
            else:
                complete = now - p.changed_at >= self.settle or (p.closed_at is not None and now - p.closed_at >= self.quiet)
            if not complete:
                continue
            del self._pending[path]
            if self._reported.get(path) == state:
                continue  # written to, but back to the content already reported
            self._reported[path] = state
            changes.append(Complete(path, state))
        return changes

    # -- helpers --------------------------------------------------------------------

    def _announce(self, path: Path, pending: _Pending) -> list[Change]:
        """Report ``path`` as :class:`Writing` once per stretch of writing (not
        for a write that leaves it as it was reported complete)."""
        if pending.announced or self._reported.get(path) == pending.state:
            return []
        pending.announced = True
        return [Writing(path, pending.state)]

    def _forget(self, path: Path, reason: str) -> list[Change]:
        pending = self._pending.pop(path, None) is not None
        reported = self._reported.pop(path, None) is not None
        return [Gone(path, reason, reported)] if pending or reported else []
