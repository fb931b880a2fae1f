"""Shared by the benchmarks: cached test media, child-process measurement, result files."""

from __future__ import annotations

import fractions
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MEDIA = BENCH / "media"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))

from scrubproxy.samples import RecordingSpec, make_recording  # noqa: E402


def cached_recording(name: str, **spec) -> Path:
    """A recording made once with ``samples.make_recording`` (``spec``: RecordingSpec
    fields) and kept in bench/media/ for later runs."""
    path = MEDIA / name
    if not path.exists():
        print(f"making {name} (slow, once)", file=sys.stderr)
        tmp = path.with_suffix(".part" + path.suffix)
        make_recording(RecordingSpec(path=tmp, **spec))
        tmp.rename(path)
    return path


def hd_source(seconds: int = 30, name: str | None = None, bframes: int = 3, gop: int = 250) -> Path:
    """A 1080p60 H.264 recording (GOP 250, B-frames, camera-like grain)."""
    return cached_recording(
        name or f"hd1080p60-{seconds}s-gop{gop}.mp4",
        frames=60 * seconds, width=1920, height=1080, rate=fractions.Fraction(60), gop=gop, bframes=bframes, colorspace="ITU709", grain=6,
    )


def uhd_source(seconds: int = 3) -> Path:
    """A 4K 30 fps H.264 recording, for peak memory."""
    return cached_recording(
        f"uhd2160p30-{seconds}s.mp4",
        frames=30 * seconds, width=3840, height=2160, rate=fractions.Fraction(30), gop=120, bframes=3, colorspace="ITU709", grain=6,
    )


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` under GNU time: wall, user, sys seconds and peak RSS (MB)."""
    fmt = "%e %U %S %M"
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", fmt, *cmd], capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr[-2000:]}")
    e, u, s, m = done.stderr.strip().splitlines()[-1].split()
    return {"wall": wall, "user": float(u), "sys": float(s), "cpu": float(u) + float(s), "rss_mb": int(m) / 1024}


def open_times_ms(open_: Callable[[], Any], rounds: int) -> list[float]:
    """Milliseconds each of ``rounds`` calls of ``open_`` took; what it returns is closed untimed."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        opened = open_()
        times.append((time.perf_counter() - t) * 1000)
        opened.close()
    return times


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, all its threads
    (Linux ``/proc/PID/stat``); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
