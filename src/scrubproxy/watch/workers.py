"""Encodes in child processes: at low CPU priority, reporting progress, killable.

A child process (not a thread) per encode, so that it can be niced without
slowing the watcher, and stopped at once without waiting for FFmpeg: SIGTERM
makes the child raise ``KeyboardInterrupt`` inside the encode, whose cleanup
removes its temporary files; a child that does not exit in time is killed and
the parent sweeps what it left (``ProxyCache.remove_leftovers``). Children
come from a fork server with the media engine preloaded (fast to start, and
no fork of a process that runs threads), and on Linux they die with the fork
server, so a watcher killed with SIGKILL leaves no encoder running on.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import ProxyCache
from ..errors import ScrubProxyError
from ..settings import ProxySettings

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


def _encode_child(
    root: str, source: str, session: str | None, settings: ProxySettings, conn: multiprocessing.connection.Connection
) -> None:
    """Child process body: ensure one proxy, send ("done", path) or ("failed", code, path, reason)."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with contextlib.suppress(OSError):
        os.nice(ENCODER_NICE)
    last = 0.0

    def progress(done: int, total: int | None, fps: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY:
            last = now
            conn.send(("progress", done, total, fps))

    try:
        try:
            outcome: tuple[Any, ...] = ("done", str(ProxyCache(root).ensure(source, session, settings, progress=progress)))
        finally:  # the encode cleaned up after itself; from here on a signal just ends the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    except ScrubProxyError as exc:
        outcome = ("failed", exc.exit_code, str(exc.path) if exc.path else source, exc.reason)
    except KeyboardInterrupt:
        outcome = ("stopped",)
    except Exception as exc:  # a bug or an engine crash: reported as this segment's failure
        outcome = ("failed", 4, source, f"encoder error: {type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):
        conn.send(outcome)
    conn.close()


@dataclass
class Encode:
    """One running child encode, as the watcher sees it."""

    source: Path
    process: Any
    conn: multiprocessing.connection.Connection
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int | None = None
    fps: float = 0.0
    outcome: tuple[Any, ...] | None = None
    exitcode: int | None = None
    stat: tuple[int, int] | None = None  # (size, mtime_ns) of the source when the encode started

    def poll(self) -> None:
        """Read every message the child has sent (never blocks)."""
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "progress":
                    _, self.done, self.total, self.fps = msg
                else:
                    self.outcome = msg

    @property
    def finished(self) -> bool:
        return not self.process.is_alive()

    def stop(self, grace: float = 3.0) -> None:
        """Ask the child to stop (it cleans up), kill it after ``grace`` seconds."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(grace)
        self.poll()

    def close(self) -> None:
        """Release the pipe and process handles (after the child ended)."""
        self.exitcode = self.process.exitcode
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


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


def wait_any(encodes: list[Encode], timeout: float) -> None:
    """Sleep until a child reports or ends, or ``timeout`` passes."""
    if not encodes:
        time.sleep(timeout)
        return
    multiprocessing.connection.wait([e.conn for e in encodes] + [e.process.sentinel for e in encodes], timeout)
