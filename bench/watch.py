"""Does ``scrubproxy watch --jobs 1`` keep up with a recorder writing 1080p30 in real time?

A simulated recorder writes 10-second 1080p30 H.264 segments (made once with
PyAV by samples.make_recording, cached in bench/media/) into a folder at
real-time pace: each segment is copied in 40 chunks over its own duration,
kept open while written and closed at the end, as a recorder does. Meanwhile
``scrubproxy watch --jobs 1`` runs as a child process. For each segment we
measure the lag from its close to its proxy being valid in the cache (polled
every 20 ms with ``ProxyCache.lookup``, independent of the watcher's own log).
Target: lag <= 1 segment duration, i.e. the watcher keeps up.

Baseline, same run: ``scrubproxy proxy`` of one segment alone (no recorder, no
nice) under GNU time: lag / baseline encode time shows what watching and
sharing the machine with the recorder cost. Also: CPU seconds and peak RSS of
the watcher and its encoders (its process tree, sampled from /proc), and
where each lag goes (noticing the close, waiting for the encoder, encoding)
from the watcher's log.

    python bench/watch.py [--segments 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime
import fractions
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import cached_recording, save, table, timed

from scrubproxy import ProxyCache

CHUNKS = 40


def segment_source(seconds: int) -> Path:
    """A 1080p30 H.264 segment (GOP 60, B-frames, grain), made once and cached."""
    return cached_recording(
        f"hd1080p30-{seconds}s-segment.mp4",
        frames=30 * seconds, width=1920, height=1080, rate=fractions.Fraction(30), gop=60, bframes=2, colorspace="ITU709", grain=6,
    )


def record(source: Path, folder: Path, count: int, seconds: float, closed: dict[Path, float]) -> None:
    """Write ``count`` segments into ``folder`` at real-time pace, noting each close time."""
    data = source.read_bytes()
    step = -(-len(data) // CHUNKS)
    start = time.monotonic()
    for i in range(count):
        path = folder / f"seg-{i:04d}.mp4"
        with open(path, "wb", buffering=0) as f:
            for k in range(CHUNKS):
                f.write(data[k * step : (k + 1) * step])
                # Pace against the clock, so slow writes do not accumulate drift.
                delay = start + seconds * (i + (k + 1) / CHUNKS) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        closed[path] = time.time()


def tree_usage(root: int) -> tuple[float, float]:
    """(summed RSS in MB, CPU seconds) of ``root`` and its descendants, from
    /proc; CPU includes children they have reaped (the fork server reaps the
    encoders, and is never reaped by the watcher, so RUSAGE_CHILDREN would miss them)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    rss, ticks = 0, 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            continue
    return rss / 1e6, ticks / os.sysconf("SC_CLK_TCK")


def log_times(log: str, word: str) -> dict[str, float]:
    """Wall time of the watcher's first log line ``<word> <segment path>`` per segment name."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        m = re.match(r"(\S+ \S+) \w+ " + word + r" (\S+)", line)
        if m:
            when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.setdefault(Path(m[2]).name, when)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    source = segment_source(args.seconds)
    work = Path(tempfile.mkdtemp(prefix="scrubproxy-bench-watch-"))
    try:
        base = timed([sys.executable, "-m", "scrubproxy", "--cache-dir", str(work / "base-cache"), "proxy", str(source), "--quiet"])
        print(f"baseline: one segment alone: {base['wall']:.2f} s wall, {base['cpu']:.2f} s CPU, {base['rss_mb']:.0f} MB", file=sys.stderr)

        rec, cache_dir = work / "rec", work / "cache"
        rec.mkdir()
        cache = ProxyCache(cache_dir)
        watcher = subprocess.Popen(
            [sys.executable, "-m", "scrubproxy", "--cache-dir", str(cache_dir), "watch", str(rec), "--jobs", "1"],
            stderr=open(work / "watch.log", "wb"),
        )
        closed: dict[Path, float] = {}
        ready: dict[Path, float] = {}
        peak_rss = cpu = 0.0
        recorder = threading.Thread(target=record, args=(source, rec, args.segments, args.seconds, closed))
        started = time.time()
        recorder.start()
        deadline = time.monotonic() + args.segments * args.seconds + 20 * args.seconds
        last_rss = 0.0
        while len(ready) < args.segments and time.monotonic() < deadline:
            for path in list(closed):
                if path not in ready and cache.lookup(path) is not None:
                    ready[path] = time.time()
            if time.monotonic() - last_rss > 0.5:
                rss, cpu = tree_usage(watcher.pid)
                peak_rss = max(peak_rss, rss)
                last_rss = time.monotonic()
            time.sleep(0.02)
        recorder.join()
        wall = time.time() - started
        cpu = tree_usage(watcher.pid)[1]
        watcher.send_signal(signal.SIGTERM)
        rc = watcher.wait(30)
        log = (work / "watch.log").read_text()
        if rc != 0 or len(ready) < args.segments:
            print(log[-3000:], file=sys.stderr)
            raise SystemExit(f"watch exited {rc} with {len(ready)}/{args.segments} proxies")

        order = sorted(closed)
        lags = [ready[p] - closed[p] for p in order]
        complete, encoding = log_times(log, "complete:"), log_times(log, "encoding")
        # Where the lag goes: noticing the close, waiting for the encoder, encoding.
        parts = [
            {"detect": complete[p.name] - closed[p], "queue": encoding[p.name] - complete[p.name], "encode": ready[p] - encoding[p.name]}
            for p in order
        ]
        result = {
            "source": {
                "file": source.name,
                "seconds": args.seconds,
                "size_mb": source.stat().st_size / 1e6,
                "geometry": "1920x1080 30 fps H.264",
            },
            "segments": args.segments,
            "baseline_alone": base,
            "lags": lags,
            "lag_parts": parts,
            "max_lag": max(lags),
            "kept_up": max(lags) <= args.seconds,
            "lag_over_segment": max(lags) / args.seconds,
            "lag_over_baseline": max(lags) / base["wall"],
            "watch_cpu_seconds": cpu,
            "watch_cpu_share": cpu / wall,
            "watch_peak_tree_rss_mb": peak_rss,
            "cores": len(os.sched_getaffinity(0)),
        }
        path = save("watch", result)
        rows = [
            [
                f"seg {i}",
                f"{lag:.2f}",
                f"{lag / args.seconds:.2f}",
                f"{lag / base['wall']:.2f}",
                f"{p['detect']:.2f} / {p['queue']:.2f} / {p['encode']:.2f}",
            ]
            for i, (lag, p) in enumerate(zip(lags, parts))
        ]
        print(f"\n1080p30 segments of {args.seconds} s, recorded in real time; `watch --jobs 1` on {result['cores']} cores\n")
        print(
            table(["segment", "lag after close (s)", "lag / segment duration", "lag / encode alone", "detect / queue / encode (s)"], rows)
        )
        print()
        print(
            table(
                ["metric", "value"],
                [
                    [
                        "baseline: `proxy` of one segment alone",
                        f"{base['wall']:.2f} s wall, {base['cpu']:.2f} s CPU, {base['rss_mb']:.0f} MB RSS",
                    ],
                    [
                        "max lag / segment duration (target <= 1)",
                        f"{result['lag_over_segment']:.2f} ({'kept up' if result['kept_up'] else 'FELL BEHIND'})",
                    ],
                    ["watch + encoders CPU", f"{cpu:.1f} s over {wall:.1f} s ({result['watch_cpu_share']:.0%} of one core)"],
                    ["peak RSS, watcher + fork server + encoder", f"{result['watch_peak_tree_rss_mb']:.0f} MB"],
                ],
            )
        )
        print(f"\nresults: {path}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
