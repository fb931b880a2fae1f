"""One mpv child process and a client for its JSON IPC socket, every call bounded by a timeout.

Why not a binding such as python-mpv-jsonipc: read at its current version, it
waits up to a module-wide 120 s for any answer (and the full 120 s when mpv has
died, since nothing wakes the waiter), silently deletes an existing file at the
socket path, terminates mpv without waiting or killing, and delivers events on
helper threads (extra latency in the seek timings we measure). What we need is
small: send a command, read its reply or an event before a deadline, and tell
"mpv died" from "mpv hangs". That is this module (one socket, no threads).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import BadInputError, PlayerError

INSTALL_HINT = (
    "mpv not found on PATH; install it (Debian/Ubuntu: sudo apt-get install mpv, "
    "Fedora: sudo dnf install mpv, macOS: brew install mpv) or put its folder on PATH"
)


def find_mpv() -> str:
    """Path of the mpv binary on PATH; :class:`PlayerError` saying how to install it when missing."""
    exe = shutil.which("mpv")
    if exe is None:
        raise PlayerError(None, INSTALL_HINT)
    return exe


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel kills mpv when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """Stop ``proc``: SIGTERM, then SIGKILL after ``grace`` seconds; always reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class MpvProcess:
    """mpv started with its IPC server on ``socket_path`` (which must not exist yet).

    Its messages (errors only) go to ``log_path``. The caller stops it with
    :meth:`stop`; on Linux it also dies with the process that started it from
    the main thread.
    """

    def __init__(self, args: list[str], socket_path: Path, log_path: Path) -> None:
        exe = find_mpv()
        self.socket_path = Path(socket_path)
        if os.path.lexists(self.socket_path):
            raise BadInputError(self.socket_path, "IPC socket path already exists (another mpv may be listening); choose another path")
        self.log_path = Path(log_path)
        cmd = [exe, f"--input-ipc-server={self.socket_path}", "--terminal=yes", "--input-terminal=no", "--msg-level=all=error", *args]
        linux_main = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent if linux_main else None,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, limit: int = 300) -> str:
        """The last line(s) mpv printed, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-3:])[-limit:]

    def describe_exit(self) -> str:
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        return f"mpv stopped ({_exit_text(code)})" + (f": {tail}" if tail else "")

    def connect(self, timeout: float) -> "MpvClient":
        """Wait for the socket (at most ``timeout`` s) and return a client on it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PlayerError(None, self.describe_exit())
            if os.path.exists(self.socket_path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(self.socket_path))
                    return MpvClient(sock, self)
                except OSError:
                    sock.close()
            if time.monotonic() > deadline:
                self.stop()
                raise PlayerError(None, f"mpv did not open its IPC socket within {timeout:g} s; stopped it")
            time.sleep(0.01)

    def stop(self) -> None:
        stop_process(self.proc)


class MpvClient:
    """Commands and events over mpv's JSON IPC. Not thread-safe beyond its own lock."""

    def __init__(self, sock: socket.socket, process: MpvProcess, timeout: float = 10.0) -> None:
        self.sock = sock
        self.process = process
        self.timeout = timeout
        self._buf = b""
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=256)
        self._next_id = 0
        self._lock = threading.RLock()

    # -- errors ---------------------------------------------------------------------

    def _died(self) -> PlayerError:
        return PlayerError(None, self.process.describe_exit())

    def _hung(self, what: str, timeout: float) -> PlayerError:
        self.process.stop()  # its state is unknown: never leave it running
        return PlayerError(None, f"mpv did not answer {what} within {timeout:g} s; stopped it")

    # -- wire -----------------------------------------------------------------------

    def _next_message(self, deadline: float) -> dict[str, Any] | None:
        """The next message from mpv, or None when none came before ``deadline``."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                raise self._died() from None
            if not chunk:
                raise self._died()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _read_message(self, deadline: float, what: str, timeout: float) -> dict[str, Any]:
        msg = self._next_message(deadline)
        if msg is None:
            raise self._hung(what, timeout)
        return msg

    def command(self, *args: Any, timeout: float | None = None) -> Any:
        """Run one mpv command; its ``data``. :class:`PlayerError` when mpv refuses, dies or hangs."""
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            payload = json.dumps({"command": list(args), "request_id": rid}).encode() + b"\n"
            self.sock.settimeout(timeout)
            try:
                self.sock.sendall(payload)
            except TimeoutError:
                raise self._hung(str(args[0]), timeout) from None
            except OSError:
                raise self._died() from None
            deadline = time.monotonic() + timeout
            while True:
                msg = self._read_message(deadline, str(args[0]), timeout)
                if "event" in msg:
                    self._events.append(msg)
                elif msg.get("request_id") == rid:
                    if msg.get("error") != "success":
                        raise PlayerError(None, f"mpv refused {' '.join(map(str, args))}: {msg.get('error')}")
                    return msg.get("data")

    def get(self, name: str) -> Any:
        return self.command("get_property", name)

    def clear_events(self) -> None:
        with self._lock:
            self._events.clear()

    def wait_event(self, *names: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event named one of ``names`` (earlier events of other names are dropped)."""
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            while self._events:
                msg = self._events.popleft()
                if msg.get("event") in names:
                    return msg
            deadline = time.monotonic() + timeout
            while True:
                msg = self._read_message(deadline, f"with {'/'.join(names)}", timeout)
                if msg.get("event") in names:
                    return msg

    def poll_event(self, *names: str, timeout: float) -> dict[str, Any] | None:
        """The next event named one of ``names`` within ``timeout`` s, else None:
        for waiting on the person (a quiet mpv is not a hung one, so it is left running)."""
        with self._lock:
            while self._events:
                msg = self._events.popleft()
                if msg.get("event") in names:
                    return msg
            deadline = time.monotonic() + timeout
            while (msg := self._next_message(deadline)) is not None:
                if msg.get("event") in names:
                    return msg
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
