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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..cache import ProxyCache
from ..cluster import ClusterQueue, PathMap, Submitted
from ..errors import ScrubProxyError
from ..settings import ProxySettings
from .messages import Done, Failed, Outcome, Progress, Stopped

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    except ScrubProxyError as exc:
        return Failed(exc.exit_code, exc.path or Path(source), exc.reason)
    except Exception as exc:  # a bug or an engine crash: reported as this segment's failure
        return Failed(4, Path(source), f"encoder error: {type(exc).__name__}: {exc}")


def _encode_child(
    root: str, source: str, session: str | None, settings: ProxySettings, conn: multiprocessing.connection.Connection
) -> None:
    """Child process body: send :class:`Progress` messages, then one outcome."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with contextlib.suppress(OSError):
        os.nice(ENCODER_NICE)
    outcome: Outcome
    try:
        try:
            outcome = encode_segment(root, source, session, settings, conn.send)
        finally:  # the encode cleaned up after itself; from here on a signal just ends the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    except KeyboardInterrupt:
        outcome = Stopped()
    with contextlib.suppress(OSError):
        conn.send(outcome)
    conn.close()


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


def start_encode(cache: ProxyCache, source: Path, session: str | None, settings: ProxySettings) -> Encode:
    """Start one encode of ``source`` in a niced child process."""
    ctx = _mp_context()
    parent_end, child_end = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_encode_child, args=(str(cache.root), str(source), session, settings, child_end), daemon=True, name=f"encode {source.name}"
    )
    process.start()
    child_end.close()
    return Encode(source, process, parent_end)


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
