"""Run the real ``scrubproxy serve`` in a child process on a free port (shared by the server and page tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_URL = re.compile(r"open (http://\S+?/)")


@contextmanager
def serving(
    *args: str | Path, cache_dir: Path, timeout: float = 120, command: str = "serve", stopped: list[int] | None = None
) -> Iterator[str]:
    """Start ``scrubproxy serve ARGS --port 0`` (or ``COMMAND ARGS --port 0``, such as
    ``watch ... --serve``); yield its base URL; stop it (really) on exit. ``stopped``
    gets its exit status when SIGTERM alone stopped it within 10 s."""
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy", command, *map(str, args), "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # keep draining, or a chatty server would block
            lines.append(line)
            m = _URL.search(line)
            if m and not found:
                found.append(m[1])
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                raise TimeoutError("scrubproxy serve did not start: " + "".join(lines))
        if not found:
            raise RuntimeError(f"scrubproxy serve exited with {proc.wait()}: " + "".join(lines))
        yield found[0]
    finally:
        proc.terminate()
        try:
            code = proc.wait(10)
            if stopped is not None:
                stopped.append(code)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
