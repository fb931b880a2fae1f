"""Watch recording folders and make a proxy of each segment as soon as it is complete.

What "complete" means is :mod:`.completeness`'s job; this module feeds it. File
events come from ``watchdog`` (inotify on Linux), which passes on the kernel's
close-write events: they are what tells a segment its recorder closed from one
it merely paused. (``watchfiles`` was the other candidate; it drops close-write
and reports only added/modified/deleted, so it cannot tell the two apart.)
Folders are also listed every couple of seconds, which catches what events
miss (network folders, an event queue that overflowed) and notices a folder
that disappears or returns.

Complete segments are encoded newest first (the one a person is most likely to
open), ``jobs`` at a time in niced child processes (:mod:`.workers`; or all
at once on a Dask cluster that runs the newest first, ``runner=OnCluster``), through
``ProxyCache.ensure``: a ``scrubproxy proxy`` in another process on the same
segment waits on the same lock and shares the encode. A segment that fails is
logged with its reason and retried only once it changes; one deleted while
queued or encoding is dropped; a folder that disappears is reported and
watched again when it returns.

A segment the detector reports as being written (:class:`~.completeness.Writing`)
whose container can be read while written (``growing.followable``: Matroska,
MPEG-TS, fragmented MP4) is followed from that moment: a child process runs
``ProxyCache.follow`` (a live proxy that grows with the recording) and is told
the recording is complete when the detector says so, which stays the one judge
of that. Follows do not count against ``jobs`` (one per segment being written:
a follow is paced by its recorder). A plain MP4/MOV, whose index comes at the
end, is shown as recording and encoded once complete. A follow whose file is
truncated, replaced or deleted is dropped and the segment encoded once complete;
one that fails while the file is still written is encoded once complete too
(a failure then is logged once, by that encode). ``follow=False`` encodes every
segment once complete.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cache import ProxyCache
from ..errors import BadInputError, ScrubProxyError
from ..growing import followable
from ..probe import REFUSED_KINDS, classify
from ..settings import ProxySettings
from .budget import enforce_budget
from .completeness import Change, Complete, CompletenessDetector, FileState, FolderBack, FolderUnavailable, Gone, Writing, file_state
from .messages import Abandoned, Done, Failed, Outcome
from .workers import ChildProcesses, ClusterEncode, Encode, Follow, Runner, start_follow, wait_any

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


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot for a status line: segments waiting, being written, encoding, done, failed.

    ``writing`` counts the segments seen being written (never one that was
    complete when the watcher started); of those, ``following`` names the ones
    followed live with their frames so far, ``recording`` the others (a plain
    MP4/MOV, or ``follow=False``). A follow still finishing after its recording
    completed stays in ``following`` until its proxy is ready.
    """

    queued: int
    writing: int
    encoding: tuple[tuple[str, int, int | None, float], ...]  # (name, frames done, frames expected, fps)
    done: int
    failed: int
    last_lag: float | None  # seconds from a segment's completion to its proxy
    following: tuple[tuple[str, int], ...] = ()  # (name, frames followed so far)
    recording: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Job:
    """A segment being encoded, and its encode."""

    segment: Complete
    encode: Encode | ClusterEncode


@dataclass
class _Followed:
    """A segment followed while it is recorded; ``segment`` once the detector says it is complete."""

    follow: Follow
    segment: Complete | None = None


class _Events:
    """watchdog handler: turns file events into detector calls, queued for the
    watcher's own thread (the detector is not thread-safe, watchdog's thread is another)."""

    def __init__(self, detector: CompletenessDetector) -> None:
        self.queue: queue.SimpleQueue[tuple[Callable[[Path], list[Change]], str]] = queue.SimpleQueue()
        self._detector = detector

    def dispatch(self, event: object) -> None:
        kind = getattr(event, "event_type", "")
        if getattr(event, "is_directory", False):
            return
        src = os.fsdecode(getattr(event, "src_path", ""))
        d = self._detector
        if kind in ("created", "modified"):
            self.queue.put((d.written, src))
        elif kind == "closed":
            self.queue.put((d.closed, src))
        elif kind == "deleted":
            self.queue.put((d.gone, src))
        elif kind == "moved":
            self.queue.put((d.gone, src))
            self.queue.put((d.closed, os.fsdecode(getattr(event, "dest_path", ""))))


class SegmentWatcher:
    """Make proxies of the complete segments in ``folders``, newest first.

    ``run()`` blocks until ``stop()`` (thread- and signal-safe) or, with
    ``once=True``, until every segment there is handled. ``max_bytes`` keeps
    the cache under a budget (checked at start and after each new proxy).
    ``settle`` and ``quiet`` are the completeness rules' times
    (:mod:`.completeness`); ``poll`` uses no file events, only listings.
    ``runner`` says where encodes run (default: ``jobs`` child processes
    here); the watcher closes it when ``run`` returns. ``follow`` follows
    segments while they are recorded (see the module docstring).
    """

    def __init__(
        self,
        folders: Sequence[Path],
        cache: ProxyCache,
        session: str | None = None,
        settings: ProxySettings | None = None,
        jobs: int | None = None,
        patterns: Sequence[str] = VIDEO_PATTERNS,
        max_bytes: int | None = None,
        settle: float = 5.0,
        quiet: float = 0.5,
        poll: bool = False,
        runner: Runner | None = None,
        follow: bool = True,
    ) -> None:
        self.folders = [Path(f).expanduser().absolute() for f in folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise BadInputError(folder, "not a folder" if folder.exists() else "no such folder")
        self.jobs = default_jobs() if jobs is None else jobs
        if self.jobs < 1:
            raise BadInputError(None, f"jobs must be at least 1, got {self.jobs}")
        self.runner = runner or ChildProcesses(self.jobs)
        self.cache = cache
        self.session = session
        self.settings = settings or ProxySettings()
        self.patterns = patterns
        self.max_bytes = max_bytes
        self.poll = poll
        self.follow = follow
        self.exit_code = 0  # the highest exit code among failed segments (see errors.py)
        self._cache_root = cache.root.resolve()
        self._stop = threading.Event()
        # The three stages a segment goes through: not complete yet, waiting
        # for a worker (newest first), encoding.
        self._detector = CompletenessDetector(settle, quiet)
        self._ready: dict[Path, Complete] = {}
        self._encodes: dict[Path, _Job] = {}
        # Segments being written: can it be followed (None: too early to tell)?
        self._writing: dict[Path, bool | None] = {}
        self._follows: dict[Path, _Followed] = {}
        self._done = 0
        self._failed = 0
        self._last_lag: float | None = None
        self._events = _Events(self._detector)
        self._observer: object | None = None
        self._watches: dict[Path, object] = {}

    # -- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to return: running encodes are stopped, nothing partial stays."""
        self._stop.set()

    def status(self) -> WatchStatus:
        """Safe to call from another thread (a status line's refresh)."""
        progress = [(j.segment.path.name, j.encode.progress) for j in self._encodes.copy().values()]
        encoding = tuple((name, p.done, p.total, p.fps) for name, p in progress)
        follows = self._follows.copy()
        following = tuple((path.name, f.follow.progress.done) for path, f in follows.items())
        writing = self._writing.copy()
        recording = tuple(path.name for path in writing if path not in follows)
        return WatchStatus(len(self._ready), len(writing), encoding, self._done, self._failed, self._last_lag, following, recording)

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
            last_scan: float | None = None
            while not self._stop.is_set():
                now = time.monotonic()
                if last_scan is None or now - last_scan >= _RESCAN:
                    self._scan()
                    last_scan = now
                self._drain_events()
                self._apply(self._detector.check())
                self._start_follows()
                self._reap()
                self._reap_follows()
                self._dispatch()
                if once and not self._detector.pending and not self._ready and not self._encodes and not self._follows:
                    break
                wait_any([*(j.encode for j in self._encodes.values()), *(f.follow for f in self._follows.values())], _TICK)
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
            log.warning("file events unavailable (%s); judging segments by a %.1f s settle time", exc, self._detector.settle)
            return
        self._observer = observer
        # Only inotify reports close-write; elsewhere (FSEvents, Windows) events
        # just restart the settle clock.
        self._detector.close_events = type(observer).__name__.startswith("Inotify")
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
            log.warning(
                "%s: no file events (%s); judging segments by a %.1f s settle time", folder, exc.strerror or exc, self._detector.settle
            )

    def _matches(self, path: Path) -> bool:
        name = path.name.lower()
        if name.startswith("."):
            return False
        if not any(fnmatch.fnmatchcase(name, p.lower()) for p in self.patterns):
            return False
        return not path.is_relative_to(self._cache_root)

    def _scan(self) -> None:
        """List the folders (I/O) and tell the detector what is there."""
        for folder in self.folders:
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                self._apply(self._detector.unavailable(folder, str(exc.strerror or exc)))
                continue
            listing: dict[Path, FileState] = {}
            for entry in entries:
                path = Path(entry.path)
                if self._matches(path):
                    with contextlib.suppress(OSError):
                        if entry.is_file():
                            listing[path] = FileState.of(entry.stat())
            self._apply(self._detector.scanned(folder, listing))

    def _drain_events(self) -> None:
        while True:
            try:
                feed, src = self._events.queue.get_nowait()
            except queue.Empty:
                return
            path = Path(src)
            if self._matches(path):
                self._apply(feed(path))

    def _apply(self, changes: list[Change]) -> None:
        """Act on what the detector reports."""
        for change in changes:
            if isinstance(change, Writing):
                self._writing.setdefault(change.path, None)
            elif isinstance(change, Complete):
                self._writing.pop(change.path, None)
                followed = self._follows.get(change.path)
                if self._not_a_recording(change.path):
                    if followed is not None:
                        self._stop_follow(change.path)
                    continue
                log.info("complete: %s (%.1f MB)", change.path, change.state.size / 1e6)
                if followed is not None:
                    followed.segment = change
                    followed.follow.complete()
                else:
                    self._ready[change.path] = change
            elif isinstance(change, Gone):
                self._writing.pop(change.path, None)
                self._drop(change.path, change.reason, logged=not change.was_complete)
            elif isinstance(change, FolderUnavailable):
                log.warning("%s: folder unavailable (%s); waiting for it to return", change.folder, change.reason)
            elif isinstance(change, FolderBack):
                log.warning("%s: folder is back", change.folder)
                self._schedule(change.folder)

    def _drop(self, path: Path, why: str, logged: bool = False) -> None:
        """Forget ``path``'s place in the queue and stop its encode; log it if
        anything was dropped (or ``logged``: it was still being written)."""
        dropped = self._ready.pop(path, None) is not None
        job = self._encodes.pop(path, None)
        if job is not None:
            job.encode.stop()
            job.encode.close()
            self.cache.remove_leftovers(self.session)
        followed = self._stop_follow(path)
        if dropped or job is not None or followed or logged:
            log.warning("dropped %s: %s", path, why)

    # -- encoding -----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start encodes of the newest ready segments while workers are free.

        A segment being written again waits for the detector's verdict, and
        one already encoding waits for that encode to end."""
        slots = self.runner.slots
        while (slots is None or len(self._encodes) < slots) and not self._stop.is_set():
            startable = [
                s for p, s in self._ready.items() if p not in self._encodes and p not in self._follows and p not in self._detector.pending
            ]
            if not startable:
                return
            segment = max(startable, key=lambda s: (s.state.mtime_ns, str(s.path)))
            del self._ready[segment.path]
            try:
                if self.cache.lookup(segment.path, self.session, self.settings) is not None:
                    log.info("proxy already valid: %s", segment.path)
                    continue
            except ScrubProxyError:
                pass  # the encode reports it properly
            log.info("encoding %s", segment.path)
            encode = self.runner.start(self.cache, segment.path, self.session, self.settings, rank=segment.state.mtime_ns)
            self._encodes[segment.path] = _Job(segment, encode)

    def _not_a_recording(self, path: Path) -> bool:
        """True, logged, for a file that holds no recording (text, a still, sound
        only...): not an encode, not a failure. Logged once per content: the
        detector reports a file complete again only once it changes."""
        try:
            kind = classify(path)
        except ScrubProxyError:
            return False  # unreadable or damaged: the encode reports it as a failure
        if kind not in REFUSED_KINDS:
            return False
        log.info("ignored %s: %s", path, REFUSED_KINDS[kind])
        return True

    def _reap(self) -> None:
        for path, job in list(self._encodes.items()):
            job.encode.poll()
            if job.encode.finished:
                del self._encodes[path]
                self._finish(job, job.encode.close())

    def _finish(self, job: _Job, outcome: Outcome) -> None:
        source = job.segment.path
        if not source.exists():
            log.warning("dropped %s: deleted", source)
            self.cache.remove_leftovers(self.session)
            return
        if isinstance(outcome, Done):
            self._done += 1
            self._last_lag = lag = time.time() - job.segment.last_write
            log.info(
                "proxy ready: %s -> %s (%s %.1f s, %.1f s after the segment completed)",
                source,
                outcome.proxy,
                "followed" if isinstance(job.encode, Follow) else "encode",
                time.monotonic() - job.encode.started,
                lag,
            )
            if self.max_bytes is not None:
                enforce_budget(self.cache, self.max_bytes, keep=[outcome.proxy])
            return
        self.cache.remove_leftovers(self.session)
        if isinstance(outcome, Failed):  # (a Stopped encode is no failure: it was asked to stop)
            # Not retried here: the detector reports this segment again only once it changes.
            self._failed += 1
            self.exit_code = max(self.exit_code, outcome.code)
            log.error("skipped %s: %s (exit code %s; retried when it changes)", outcome.path, outcome.reason, outcome.code)

    # -- following ------------------------------------------------------------------

    def _start_follows(self) -> None:
        """Follow each segment being written whose container can be read while
        written, once enough of it is there to tell."""
        if not self.follow or self._stop.is_set():
            return
        for path, can in list(self._writing.items()):
            if can is not None or path in self._follows or path in self._encodes:
                continue
            can = self._writing[path] = followable(path)
            if can:
                log.info("following %s while it is recorded", path)
                self._ready.pop(path, None)  # an earlier content's turn: the follow makes the proxy now
                self._follows[path] = _Followed(start_follow(self.cache, path, self.session, self.settings))
            elif can is False:
                log.info("recording: %s (its index comes at the end: proxied once complete)", path)

    def _stop_follow(self, path: Path) -> bool:
        """Stop following ``path`` (its live proxy is deleted); False if it was not followed."""
        followed = self._follows.pop(path, None)
        if followed is None:
            return False
        followed.follow.stop()
        followed.follow.close()
        self.cache.remove_leftovers(self.session)
        return True

    def _reap_follows(self) -> None:
        for path, followed in list(self._follows.items()):
            followed.follow.poll()
            if followed.follow.finished:
                del self._follows[path]
                self._end_follow(path, followed, followed.follow.close())

    def _end_follow(self, path: Path, followed: _Followed, outcome: Outcome) -> None:
        """What a follow's outcome means for its segment."""
        segment = followed.segment
        if segment is not None and not isinstance(outcome, Abandoned):
            self._finish(_Job(segment, followed.follow), outcome)
            return
        if path in self._writing:
            self._writing[path] = False  # not followed again while this recording lasts: encoded once complete
        if isinstance(outcome, Abandoned):
            log.warning("dropped the live proxy of %s: %s; proxied once complete", path, outcome.reason)
            with contextlib.suppress(OSError):
                if segment is not None and file_state(path) == segment.state:
                    self._ready[path] = segment  # it was complete as it is now
        elif isinstance(outcome, Failed):
            log.debug("stopped following %s: %s; proxied once complete", path, outcome.reason)
        elif isinstance(outcome, Done):  # a valid proxy was there already
            log.info("proxy already valid: %s", path)

    def _shutdown(self) -> None:
        for path in list(self._follows):
            self._stop_follow(path)
            log.warning("stopped following %s", path)
        for job in self._encodes.values():
            job.encode.stop()
            job.encode.close()
            log.warning("stopped encoding %s", job.segment.path)
        if self._encodes:
            self._encodes.clear()
            self.cache.remove_leftovers(self.session)
        observer = self._observer
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.stop()  # type: ignore[attr-defined]
                observer.join(2.0)  # type: ignore[attr-defined]
            self._observer = None
        self.runner.close()
