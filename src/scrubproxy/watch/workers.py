"""Encodes in child processes: at low CPU priority, reporting progress, killable.

A child process (not a thread) per encode, so that it can be niced without
slowing the watcher, and stopped at once without waiting for FFmpeg: SIGTERM
makes the child raise ``KeyboardInterrupt`` inside the encode, whose cleanup
removes its temporary files; a child that does not exit in time is killed and
the parent sweeps what it left (``ProxyCache.remove_leftovers``). Children
come from a fork server with the media engine preloaded (fast to start, and
no fork of a process that runs threads), and on Linux they die with the fork
server, so a watcher killed with SIGKILL leaves no encoder running on.

The encode itself (:func:`encode_segment`) knows nothing of processes: what it
reports are plain values (:mod:`.messages`), so another place to run it (a
cluster worker) can reuse it as it is.

A segment followed while it is recorded (:func:`start_follow`) runs the same
way, always here (it reads the file as it grows): ``ProxyCache.follow`` in a
niced child whose end of recording is the watcher's word, sent on a second
pipe once the watcher's detector says the segment is complete.

Where encodes run is the watcher's :class:`Runner`: :class:`ChildProcesses`
(here, ``jobs`` at a time) or :class:`OnCluster` (a Dask cluster's workers,
every ready segment submitted at once, the newest with the highest priority);
both hand back jobs the watcher treats alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..cache import ProxyCache
from ..cluster import ClusterQueue, PathMap, Submitted
from ..errors import ScrubProxyError
from ..growing import SourceChangedError
from ..settings import ProxySettings
from .messages import Abandoned, Done, Failed, Outcome, Progress, Stopped

if TYPE_CHECKING:
    from distributed import Client

#: Added to the watcher's niceness for encoders: the recorder keeps its frames.
ENCODER_NICE = 10
_PR_SET_PDEATHSIG = 1
_PROGRESS_EVERY = 0.25  # seconds between progress messages

_context: Any = None


def _mp_context() -> Any:
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["scrubproxy.cache"])
        else:  # pragma: no cover - macOS/Windows
            _context = multiprocessing.get_context("spawn")
    return _context


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _failure(source: str, exc: Exception) -> Failed:
    """``exc`` as this segment's failure: a bug or an engine crash counts as an encode failure."""
    if isinstance(exc, ScrubProxyError):
        return Failed(exc.exit_code, exc.path or Path(source), exc.reason)
    return Failed(4, Path(source), f"encoder error: {type(exc).__name__}: {exc}")


def encode_segment(
    root: str, source: str, session: str | None, settings: ProxySettings, progress: Callable[[Progress], None]
) -> Done | Failed:
    """Ensure the proxy of ``source`` in the cache at ``root``; a failure is returned, not raised.

    Wherever it runs (here a child process), ``progress`` gets a
    :class:`Progress` at most every quarter second. ``KeyboardInterrupt``
    (a stop request, not an ``Exception``) passes through, after the encode
    removed its temporary files.
    """
    last = 0.0

    def report(done: int, total: int | None, fps: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY:
            last = now
            progress(Progress(done, total, fps))

    try:
        return Done(ProxyCache(root).ensure(source, session, settings, progress=report))
    except Exception as exc:
        return _failure(source, exc)


def follow_segment(
    root: str,
    source: str,
    session: str | None,
    settings: ProxySettings,
    is_done: Callable[[], bool],
    progress: Callable[[Progress], None],
    stop: threading.Event | None = None,
) -> Done | Failed | Abandoned:
    """Follow ``source`` while it is recorded into a live proxy in the cache at
    ``root`` until ``is_done()`` (the watcher's word that it is complete); the
    outcome is returned, not raised. ``progress`` gets the frames published so far
    at each publish (about twice a second). A file truncated, replaced or deleted
    meanwhile is :class:`Abandoned` (its live proxy deleted)."""
    started = time.monotonic()

    def published(count: int) -> None:
        progress(Progress(count, None, count / max(time.monotonic() - started, 1e-6)))

    try:
        return Done(ProxyCache(root).follow(source, session, settings, is_done=is_done, stop=stop, on_publish=published))
    except SourceChangedError as exc:
        return Abandoned(exc.reason)
    except Exception as exc:
        return _failure(source, exc)


def _run_child(conn: multiprocessing.connection.Connection, work: Callable[[], Outcome], stop: threading.Event | None = None) -> None:
    """Child process body: ``work()`` sends its progress on ``conn``, then its
    outcome is sent. SIGTERM/SIGINT stop it (``KeyboardInterrupt``; ``stop`` is set
    too, for the threads that read the source)."""
    _die_with_parent()

    def interrupt(signum: int, frame: object) -> None:
        if stop is not None:
            stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    with contextlib.suppress(OSError):
        os.nice(ENCODER_NICE)
    outcome: Outcome
    try:
        try:
            outcome = work()
        finally:  # the work cleaned up after itself; from here on a signal just ends the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    except KeyboardInterrupt:
        outcome = Stopped()
    with contextlib.suppress(OSError):
        conn.send(outcome)
    conn.close()


def _encode_child(
    root: str, source: str, session: str | None, settings: ProxySettings, conn: multiprocessing.connection.Connection
) -> None:
    _run_child(conn, lambda: encode_segment(root, source, session, settings, conn.send))


def _follow_child(
    root: str,
    source: str,
    session: str | None,
    settings: ProxySettings,
    told: multiprocessing.connection.Connection,
    conn: multiprocessing.connection.Connection,
) -> None:
    """A follow whose end of recording is the watcher's word on ``told``. The
    watcher gone (``told`` at its end) is no such word: the follow is stopped, its
    live proxy deleted, never finished as if the recording were."""
    stop = threading.Event()
    complete = False

    def is_done() -> bool:
        nonlocal complete
        if not complete and not stop.is_set() and told.poll():
            try:
                complete = bool(told.recv())
            except (EOFError, OSError):
                os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread: a clean stop
        return complete

    _run_child(conn, lambda: follow_segment(root, source, session, settings, is_done, conn.send, stop), stop)


class Encode:
    """One running child encode, as the watcher sees it: latest progress, then its outcome."""

    def __init__(self, source: Path, process: Any, conn: multiprocessing.connection.Connection) -> None:
        self.source = source
        self.started = time.monotonic()
        self.progress = Progress()
        self._process = process
        self._conn = conn
        self._outcome: Outcome | None = None

    def poll(self) -> None:
        """Read every message the child has sent (never blocks)."""
        with contextlib.suppress(EOFError, OSError):
            while self._conn.poll():
                msg = self._conn.recv()
                if isinstance(msg, Progress):
                    self.progress = msg
                else:
                    self._outcome = msg

    @property
    def finished(self) -> bool:
        """The child has sent its outcome or ended (call :meth:`close` next)."""
        return self._outcome is not None or not self._process.is_alive()

    @property
    def waitables(self) -> list[Any]:
        """What ``multiprocessing.connection.wait`` wakes on for this encode."""
        return [self._conn, self._process.sentinel]

    def stop(self, grace: float = 3.0) -> None:
        """Ask the child to stop (it cleans up), kill it after ``grace`` seconds."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(grace)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(grace)
        self.poll()

    def close(self, grace: float = 5.0) -> Outcome:
        """Let the child exit (``grace`` seconds), release its pipe and process
        handles, and return its outcome; a child that died without one failed."""
        self._process.join(grace)
        self.poll()
        exitcode = self._process.exitcode
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(ValueError):
            self._process.close()
        if self._outcome is None:
            self._outcome = Failed(4, self.source, f"encoder process died (exit status {exitcode})")
        return self._outcome


class Follow(Encode):
    """One running child follow: an :class:`Encode` that is also told when its segment is complete."""

    def __init__(
        self, source: Path, process: Any, conn: multiprocessing.connection.Connection, told: multiprocessing.connection.Connection
    ) -> None:
        super().__init__(source, process, conn)
        self._told = told
        self.told_complete = False

    def complete(self) -> None:
        """The watcher's detector says the recording is complete: the follow reads to the end and finishes."""
        if not self.told_complete:
            self.told_complete = True
            with contextlib.suppress(OSError):
                self._told.send(True)

    def close(self, grace: float = 5.0) -> Outcome:
        outcome = super().close(grace)
        with contextlib.suppress(OSError):
            self._told.close()
        return outcome


def _start_child(target: Callable[..., None], args: tuple[Any, ...], name: str) -> tuple[Any, multiprocessing.connection.Connection]:
    """Start ``target(*args, conn)`` in a child process; returns it and the parent's end of ``conn``."""
    ctx = _mp_context()
    parent_end, child_end = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, child_end), daemon=True, name=name)
    process.start()
    child_end.close()
    return process, parent_end


def start_encode(cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings) -> Encode:
    """Start one encode of ``source`` in a niced child process."""
    process, conn = _start_child(_encode_child, (str(cache.root), str(source), session, settings), f"encode {source.name}")
    return Encode(source, process, conn)


def start_follow(cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings) -> Follow:
    """Start following ``source`` while it is recorded, in a niced child process;
    it ends once told (:meth:`Follow.complete`) and has read every byte."""
    told_read, told = _mp_context().Pipe(duplex=False)
    try:
        process, conn = _start_child(_follow_child, (str(cache.root), str(source), session, settings, told_read), f"follow {source.name}")
    finally:
        told_read.close()
    return Follow(source, process, conn, told)


def wait_any(encodes: Iterable[Encode], timeout: float) -> None:
    """Sleep until a child reports or ends, or ``timeout`` passes."""
    waitables = [w for e in encodes for w in e.waitables]
    if not waitables:
        time.sleep(timeout)
        return
    multiprocessing.connection.wait(waitables, timeout)


class ClusterEncode:
    """One segment on a Dask cluster, with :class:`Encode`'s interface."""

    def __init__(self, job: Submitted) -> None:
        self.source = job.source
        self._submitted = time.monotonic()
        self._job = job
        self._stopped = False

    @property
    def started(self) -> float:
        """When a worker took it (its first progress), else when it was submitted."""
        return self._job.running_since or self._submitted

    @property
    def progress(self) -> Progress:
        return Progress(*self._job.progress)

    def poll(self) -> None:
        """Nothing to read: progress arrives on the client's own thread."""

    @property
    def finished(self) -> bool:
        return self._job.done()

    @property
    def waitables(self) -> list[Any]:
        """None: progress and the outcome arrive on the client's thread, read each tick."""
        return []

    def stop(self, grace: float = 3.0) -> None:
        """Cancel the task (a running encode stops at its next frame, removing its temp files)."""
        self._stopped = True
        self._job.cancel()

    def close(self, grace: float = 5.0) -> Outcome:
        """The task's outcome as the watcher's values; a stopped or unfinished one is :class:`Stopped`."""
        if self._stopped or not self._job.done() or self._job.cancelled():
            return Stopped()
        try:
            return Done(self._job.result())
        except ScrubProxyError as exc:
            return Failed(exc.exit_code, exc.path or self.source, exc.reason)


class Runner(Protocol):
    """Where the watcher's encodes run. ``slots``: how many at once (``None``:
    every ready segment, the runner orders them). ``rank``: higher is newer."""

    slots: int | None

    def start(self, cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings, rank: int) -> Encode | ClusterEncode: ...

    def close(self) -> None: ...


class ChildProcesses:
    """Encodes in niced child processes on this machine, ``jobs`` at a time (the default)."""

    def __init__(self, jobs: int) -> None:
        self.slots: int | None = jobs

    def start(self, cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings, rank: int) -> Encode:
        return start_encode(cache, source, session, settings)

    def close(self) -> None:
        """Nothing held between encodes."""


class OnCluster:
    """Encodes on the workers of ``client``'s Dask cluster: every ready segment is
    submitted at once and the cluster runs the highest ``rank`` (the newest) first."""

    slots: int | None = None

    def __init__(self, client: Client, path_map: PathMap = ()) -> None:
        self._queue = ClusterQueue(client, path_map)

    def start(self, cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings, rank: int) -> ClusterEncode:
        # rank is a segment's mtime in ns; in ms it is still exact enough and fits Dask's 64-bit ints.
        return ClusterEncode(self._queue.submit(source, session, settings, cache_root=cache.root, priority=rank // 1_000_000))

    def close(self) -> None:
        """Cancel what is still queued or running; stop listening for progress."""
        self._queue.close()
