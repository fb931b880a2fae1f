"""Watch recording folders and make a proxy of each segment as soon as it is complete.

When is a segment complete? A recorder keeps a segment open while it writes
it and closes it at the end, so where the kernel reports file events (inotify
on Linux, through ``watchdog``) a segment we saw being written is complete once
its writer closed it (close-write, or renamed into the folder) and nothing
wrote to it for ``quiet`` seconds after. A recorder that pauses mid-segment is
never mistaken for a finished one. Where close events are not available
(network folders, whose remote writes raise no local events; ``poll=True``;
macOS and Windows, whose watchdog backends report no closes) and for segments
that were already there when we started, a segment is complete once its size
and mtime stayed unchanged for ``settle`` seconds. (``watchfiles`` was the other candidate; it drops the
kernel's close-write events and reports only added/modified/deleted, so it
cannot tell a closed segment from a paused one.)

Complete segments are encoded newest first (the one a person is most likely to
open), ``jobs`` at a time in niced child processes (:mod:`.workers`), through
``ProxyCache.ensure``: a ``scrubproxy proxy`` in another process on the same
segment waits on the same lock and shares the encode. A segment that fails is
logged with its reason and retried only once it changes; one deleted while
queued or encoding is dropped; a folder that disappears is reported and
watched again when it returns.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .budget import enforce_budget
from ..cache import ProxyCache
from ..errors import BadInputError, ScrubProxyError
from ..settings import ProxySettings
from .workers import Encode, start_encode, wait_any

log = logging.getLogger(__name__)

#: Default segment patterns: the containers recorders write.
VIDEO_PATTERNS = ("*.mp4", "*.mov", "*.mkv", "*.m4v", "*.avi", "*.ts", "*.m2ts", "*.mts", "*.flv", "*.webm", "*.mxf")

_TICK = 0.2  # seconds between checks of pending segments
_RESCAN = 2.0  # seconds between folder scans (catches what events miss, and vanished folders)


def default_jobs() -> int:
    """Half the cores this process may use, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@dataclass
class _Pending:
    """A segment not yet complete (or not yet known to be)."""

    stat: tuple[int, int]  # (size, mtime_ns)
    changed_at: float  # monotonic time its stat last changed
    witnessed: bool = False  # seen being written through events: must be closed
    closed_at: float | None = None


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot for a status line: segments waiting, encoding, done, failed."""

    queued: int
    writing: int
    encoding: tuple[tuple[str, int, int | None, float], ...]  # (name, frames done, frames expected, fps)
    done: int
    failed: int
    last_lag: float | None  # seconds from a segment's completion to its proxy


class _Events:
    """watchdog handler: file events into a thread-safe queue, as (kind, path)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def dispatch(self, event: object) -> None:
        kind = getattr(event, "event_type", "")
        if getattr(event, "is_directory", False):
            return
        src = os.fsdecode(getattr(event, "src_path", ""))
        if kind in ("created", "modified"):
            self.queue.put(("written", src))
        elif kind == "closed":
            self.queue.put(("closed", src))
        elif kind == "deleted":
            self.queue.put(("gone", src))
        elif kind == "moved":
            self.queue.put(("gone", src))
            self.queue.put(("closed", os.fsdecode(getattr(event, "dest_path", ""))))


@dataclass
class SegmentWatcher:
    """Make proxies of the complete segments in ``folders``, newest first.

    ``run()`` blocks until ``stop()`` (thread- and signal-safe) or, with
    ``once=True``, until every segment there is handled. ``max_bytes`` keeps
    the cache under a budget (checked at start and after each new proxy).
    """

    folders: Sequence[Path]
    cache: ProxyCache
    session: str | None = None
    settings: ProxySettings = field(default_factory=ProxySettings)
    jobs: int = field(default_factory=default_jobs)
    patterns: Sequence[str] = VIDEO_PATTERNS
    max_bytes: int | None = None
    settle: float = 5.0
    quiet: float = 0.5
    poll: bool = False

    def __post_init__(self) -> None:
        self.folders = [Path(f).expanduser().absolute() for f in self.folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise BadInputError(folder, "not a folder" if folder.exists() else "no such folder")
        if self.jobs < 1:
            raise BadInputError(None, f"jobs must be at least 1, got {self.jobs}")
        self._stop = threading.Event()
        self._pending: dict[Path, _Pending] = {}
        self._ready: dict[Path, tuple[int, int]] = {}  # complete, waiting for a worker
        self._handled: dict[Path, tuple[int, int]] = {}  # done or failed, as of this (size, mtime_ns)
        self._encodes: list[Encode] = []
        self._missing: set[Path] = set()
        self._events = _Events()
        self._observer: object | None = None
        self._close_events = False  # does the observer report close-write?
        self._watches: dict[Path, object] = {}
        self._done = 0
        self._failed = 0
        self.exit_code = 0  # the highest exit code among failed segments (see errors.py)
        self._last_lag: float | None = None
        self._completed_at: dict[Path, float] = {}
        self._cache_root = self.cache.root.resolve()

    # -- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to return: running encodes are stopped, nothing partial stays."""
        self._stop.set()

    def status(self) -> WatchStatus:
        encoding = tuple((e.source.name, e.done, e.total, e.fps) for e in self._encodes)
        return WatchStatus(len(self._ready), len(self._pending), encoding, self._done, self._failed, self._last_lag)

    def run(self, once: bool = False) -> int:
        """Watch until stopped (or, ``once``, until all present segments are
        handled). Returns how many segments failed."""
        removed = self.cache.remove_leftovers(self.session)
        if removed:
            log.info("removed %d leftover file(s) of interrupted encodes", removed)
        if self.max_bytes is not None:
            enforce_budget(self.cache, self.max_bytes)
        if not self.poll and not once:
            self._start_observer()
        try:
            last_scan = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_scan >= _RESCAN or last_scan == 0.0:
                    self._scan()
                    last_scan = now
                self._drain_events()
                self._check_pending()
                self._reap()
                self._dispatch()
                if once and not self._pending and not self._ready and not self._encodes:
                    break
                wait_any(self._encodes, _TICK)
        finally:
            self._shutdown()
        return self._failed

    # -- discovery ------------------------------------------------------------------

    def _start_observer(self) -> None:
        try:
            from watchdog.observers import Observer

            observer = Observer()
            observer.start()
        except Exception as exc:  # no inotify (limits, platform): the settle rule still works
            log.warning("file events unavailable (%s); judging segments by a %.1f s settle time", exc, self.settle)
            return
        self._observer = observer
        # Only inotify reports close-write; elsewhere (FSEvents, Windows) events
        # just restart the settle clock.
        self._close_events = type(observer).__name__.startswith("Inotify")
        for folder in self.folders:
            self._schedule(folder)

    def _schedule(self, folder: Path) -> None:
        observer = self._observer
        if observer is None:
            return
        old = self._watches.pop(folder, None)
        if old is not None:
            with contextlib.suppress(Exception):
                observer.unschedule(old)  # type: ignore[attr-defined]
        try:
            self._watches[folder] = observer.schedule(self._events, str(folder), recursive=False)  # type: ignore[attr-defined]
        except OSError as exc:
            log.warning("%s: no file events (%s); judging segments by a %.1f s settle time", folder, exc.strerror or exc, self.settle)

    def _matches(self, path: Path) -> bool:
        name = path.name.lower()
        if name.startswith("."):
            return False
        if not any(fnmatch.fnmatchcase(name, p.lower()) for p in self.patterns):
            return False
        return not path.is_relative_to(self._cache_root)

    def _scan(self) -> None:
        """List the folders: new segments become pending; vanished folders are reported."""
        now = time.monotonic()
        for folder in self.folders:
            try:
                listing = list(os.scandir(folder))
            except OSError as exc:
                if folder not in self._missing:
                    self._missing.add(folder)
                    log.warning("%s: folder unavailable (%s); waiting for it to return", folder, exc.strerror or exc)
                    self._forget_folder(folder)
                continue
            if folder in self._missing:
                self._missing.discard(folder)
                log.warning("%s: folder is back", folder)
                self._schedule(folder)
            for entry in listing:
                path = Path(entry.path)
                if path in self._pending or path in self._ready or not self._matches(path):
                    continue
                with contextlib.suppress(OSError):
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                    stat = (st.st_size, st.st_mtime_ns)
                    if self._handled.get(path) == stat:
                        continue
                    if any(e.source == path for e in self._encodes):
                        continue
                    # Unchanged since long enough ago (by its mtime) counts as settled already.
                    age = max(0.0, time.time() - st.st_mtime)
                    self._pending[path] = _Pending(stat, now - min(age, self.settle))

    def _forget_folder(self, folder: Path) -> None:
        for path in [p for p in (*self._pending, *self._ready) if p.parent == folder]:
            self._drop(path, "its folder disappeared")

    def _drain_events(self) -> None:
        now = time.monotonic()
        while True:
            try:
                kind, src = self._events.queue.get_nowait()
            except queue.Empty:
                return
            path = Path(src)
            if not self._matches(path):
                continue
            if kind == "gone":
                self._drop(path, "deleted")
                continue
            pending = self._pending.get(path)
            if pending is None:
                try:
                    st = path.stat()
                except OSError:
                    continue
                pending = self._pending[path] = _Pending((st.st_size, st.st_mtime_ns), now)
                self._ready.pop(path, None)
            if kind == "written":
                pending.witnessed = self._close_events
                pending.closed_at = None
                pending.changed_at = now
            else:
                pending.closed_at = now

    def _check_pending(self) -> None:
        """Promote complete segments to the ready queue."""
        now = time.monotonic()
        for path, p in list(self._pending.items()):
            try:
                st = path.stat()
            except OSError:
                self._drop(path, "deleted")
                continue
            stat = (st.st_size, st.st_mtime_ns)
            if stat != p.stat:
                p.stat, p.changed_at = stat, now
                continue
            if p.witnessed:
                complete = p.closed_at is not None and now - max(p.closed_at, p.changed_at) >= self.quiet
            else:
                complete = now - p.changed_at >= self.settle or (p.closed_at is not None and now - p.closed_at >= self.quiet)
            if not complete:
                continue
            del self._pending[path]
            if self._handled.get(path) == stat:
                continue  # closed again without a change (e.g. a reader that opened it for writing)
            self._ready[path] = stat
            self._completed_at[path] = st.st_mtime  # its last write: lag is measured from here
            log.info("complete: %s (%.1f MB)", path, stat[0] / 1e6)

    def _drop(self, path: Path, why: str) -> None:
        dropped = self._pending.pop(path, None) is not None
        dropped = self._ready.pop(path, None) is not None or dropped
        for e in [e for e in self._encodes if e.source == path]:
            e.stop()
            e.close()
            self._encodes.remove(e)
            self.cache.remove_leftovers(self.session)
            dropped = True
        self._completed_at.pop(path, None)
        if dropped:
            log.warning("dropped %s: %s", path, why)

    # -- encoding -----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start encodes of the newest ready segments while workers are free."""
        while self._ready and len(self._encodes) < self.jobs and not self._stop.is_set():
            path = max(self._ready, key=lambda p: (self._ready[p][1], str(p)))
            stat = self._ready.pop(path)
            try:
                if self.cache.lookup(path, self.session, self.settings) is not None:
                    self._handled[path] = stat
                    log.info("proxy already valid: %s", path)
                    continue
            except ScrubProxyError:
                pass  # the encode reports it properly
            log.info("encoding %s", path)
            encode = start_encode(self.cache, path, self.session, self.settings)
            encode.stat = stat
            self._encodes.append(encode)

    def _reap(self) -> None:
        for e in list(self._encodes):
            e.poll()
            if e.outcome is None and not e.finished:
                continue
            e.process.join(5.0)  # it has said its last word (or died): let it exit
            e.poll()
            self._encodes.remove(e)
            e.close()
            self._finish(e)

    def _finish(self, e: Encode) -> None:
        if not e.source.exists():
            self._completed_at.pop(e.source, None)
            log.warning("dropped %s: deleted", e.source)
            self.cache.remove_leftovers(self.session)
            return
        # Remembered as of when the encode started: a segment that changed since
        # differs from this on the next scan and is handled again.
        stat = e.stat or (0, 0)
        outcome = e.outcome or ("failed", 4, str(e.source), f"encoder process died (exit status {e.exitcode})")
        completed = self._completed_at.pop(e.source, time.time())
        if outcome[0] == "done":
            proxy = Path(outcome[1])
            self._handled[e.source] = stat
            self._done += 1
            self._last_lag = lag = time.time() - completed
            log.info(
                "proxy ready: %s -> %s (encode %.1f s, %.1f s after the segment completed)",
                e.source,
                proxy,
                time.monotonic() - e.started,
                lag,
            )
            if self.max_bytes is not None:
                enforce_budget(self.cache, self.max_bytes, keep=[proxy])
        else:
            self.cache.remove_leftovers(self.session)
            if outcome[0] == "stopped":
                return
            self._handled[e.source] = stat
            self._failed += 1
            _, code, where, reason = outcome
            self.exit_code = max(self.exit_code, int(code))
            log.error("skipped %s: %s (exit code %s; retried when it changes)", where, reason, code)

    def _shutdown(self) -> None:
        for e in self._encodes:
            e.stop()
            e.close()
            log.warning("stopped encoding %s", e.source)
        if self._encodes:
            self._encodes.clear()
            self.cache.remove_leftovers(self.session)
        observer = self._observer
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.stop()  # type: ignore[attr-defined]
                observer.join(2.0)  # type: ignore[attr-defined]
            self._observer = None
