"""Live: how long after a frame's bytes reach a recording is it served, exactly?

A real recorder (``python -m scrubproxy.pacer``, FFmpeg's own muxers at real
time, ``flush_packets=0`` so the file grows in the muxer's own bursts: a
Matroska cluster at a time (one per GOP), an MPEG-TS I/O buffer at a time)
writes a pre-encoded 1080p30 H.264 recording (GOP 60, 3 B-frames, grain),
made once by samples.make_recording: 60 s, looped by a stream copy with
shifted timestamps to ``--seconds`` (default 180), in MKV and in TS; then
``--uhd-seconds`` of 2160p30 in MKV. A follower runs in its own process
(``ProxyCache.follow``, started and imported before the recorder starts, as a
watcher would be). The client, in this process, opens the live proxy with a
``ProxyReader`` and refreshes it every 50 ms; each new frame's JPEG is decoded
and its painted index checked (== k mod the loop's length).

Lag of frame k = the time the client has it, checked, minus the time its
bytes were in the file: the first pacer-log entry (wall time and file size
after each packet) whose size covers the end of k's packet, the packet's
position taken from a demux of the finished file (in TS, the packet's
payload spread over 184-byte cells of 188 bytes). Baseline, same run: proxy
after close: (file closed - bytes in the file) + the wall time of
``scrubproxy proxy`` on the finished file. Also: whether the lag grows (p95
of the first vs the last minute), the follower's CPU (``/proc/PID/stat``,
average cores while the recorder ran), and every frame served live compared
(BLAKE2 of its JPEG bytes) with the finished proxy's.

    python bench/live.py [--seconds 180] [--uhd-seconds 60] [--formats matroska,mpegts]
    python bench/live.py --seconds 10 --uhd-seconds 0      # smoke run
"""

from __future__ import annotations

import argparse
import bisect
import fractions
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import av
import common
import simplejpeg
from common import cached_recording, cpu_seconds, percentile, save, table, timed

from scrubproxy import ProxyCache, ProxyReader
from scrubproxy.errors import ProxyFormatError
from scrubproxy.samples import read_index

POLL = 0.05  # the client's refresh period
SESSION = "live"
EXT = {"matroska": "mkv", "mpegts": "ts"}
TARGETS = {"p95": 1.0, "max": 2.0, "cores": 1.0}


def source(height: int, seconds: int) -> Path:
    """A 30 fps H.264 recording (GOP 60, 3 B-frames, grain), made once."""
    width = height * 16 // 9
    return cached_recording(
        f"{'uhd' if height > 1080 else 'hd'}{height}p30-{seconds}s-gop60.mp4",
        frames=30 * seconds, width=width, height=height, rate=fractions.Fraction(30), gop=60, bframes=3, colorspace="ITU709", grain=6,
    )


def looped(src: Path, seconds: float, out: Path) -> tuple[Path, int]:
    """``src`` repeated (stream copy, timestamps shifted by its length) up to
    ``seconds``, cut at a keyframe; returns the file and ``src``'s frame count."""
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        tb = stream.time_base
        with av.open(str(out), "w", format="matroska") as o:
            ostream = o.add_stream_from_template(stream)
            span = max(p.pts for p in packets) - min(p.pts for p in packets) + round(1 / (stream.average_rate * tb))
            limit = seconds / tb
            for i in range(math.ceil(seconds * stream.average_rate / len(packets))):
                for p in packets:
                    pts, dts = p.pts + i * span, p.dts + i * span
                    if p.is_keyframe and pts >= limit:
                        return out, len(packets)
                    copy = av.Packet(bytes(p))
                    copy.pts, copy.dts, copy.time_base, copy.stream = pts, dts, tb, ostream
                    copy.is_keyframe = p.is_keyframe
                    o.mux(copy)
    return out, len(packets)


FOLLOWER = textwrap.dedent(
    """
    import os, sys, time
    from scrubproxy import ProxyCache
    cache, target = ProxyCache(sys.argv[1]), sys.argv[2]
    print("ready", flush=True)
    while not os.path.exists(target):
        time.sleep(0.01)
    print(cache.follow(target, sys.argv[3]), flush=True)
    """
)


def bytes_arrival(target: Path, log: list[tuple[float, int]], fmt: str) -> tuple[list[float], list[float]]:
    """Per frame, in presentation order: when its packet's bytes were in the
    file (from the pacer's log), and its source time in seconds."""
    times, sizes = [e[0] for e in log], [e[1] for e in log]
    with av.open(str(target)) as c:
        s = c.streams.video[0]
        packets = [(p.pts, p.pos, p.size) for p in c.demux(s) if p.size]
        tb = float(s.time_base)
    arrivals = []
    for pts, pos, size in sorted(packets):
        end = pos + (math.ceil(size / 184) * 188 if fmt == "mpegts" else size)
        i = bisect.bisect_left(sizes, end)
        arrivals.append(times[min(i, len(times) - 1)])
    first = packets and min(p[0] for p in packets)
    return arrivals, [(p[0] - first) * tb for p in sorted(packets)]


def run_case(name: str, src: Path, fmt: str, seconds: float, work: Path) -> dict:
    """Record ``seconds`` of ``src`` (looped) in ``fmt``, follow it, serve it, measure."""
    case = work / name
    case.mkdir()
    recording, loop = looped(src, seconds, case / "looped.mkv")
    target, log_path, root = case / f"rec.{EXT[fmt]}", case / "pacer.json", case / "cache"
    env = {**os.environ, "PYTHONPATH": str(common.BENCH.parent / "src")}
    follower = subprocess.Popen([sys.executable, "-c", FOLLOWER, str(root), str(target), SESSION], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert follower.stdout.readline().strip() == "ready"
    cpu_start = cpu_seconds(follower.pid)
    recorder = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy.pacer", str(recording), str(target), "--speed", "1", "--format", fmt, "--option", "flush_packets=0", "--log", str(log_path)],
        env=env,
    )
    started = time.time()
    cache = ProxyCache(root)
    served: dict[int, float] = {}
    digests: dict[int, bytes] = {}
    wrong: list[int] = []
    cpu_samples: list[tuple[float, float]] = []
    loads: list[tuple[float, float]] = []  # (wall time, 1-minute load average): the machine is shared
    reader: ProxyReader | None = None
    dropped = None
    recorder_done = None
    while True:
        if recorder_done is None and recorder.poll() is not None:
            recorder_done = time.time()
        cpu = cpu_seconds(follower.pid)
        if cpu is not None and follower.poll() is None:
            cpu_samples.append((time.time(), cpu))
        if not loads or time.time() - loads[-1][0] >= 5:
            loads.append((time.time(), os.getloadavg()[0]))
        if reader is None and target.exists():
            live = cache.live_proxy(target, SESSION)
            if live is not None:
                try:
                    reader = ProxyReader(live)
                except ProxyFormatError:
                    reader = None
        if reader is not None:
            try:
                n = reader.refresh()
            except ProxyFormatError as exc:
                dropped = str(exc)
                break
            for k in range(len(served), n):
                data = reader.jpeg(k)
                if read_index(simplejpeg.decode_jpeg(data, colorspace="RGB")) != k % loop:
                    wrong.append(k)
                served[k] = time.time()
                digests[k] = hashlib.blake2b(data, digest_size=16).digest()
            if not reader.live and follower.poll() is not None:
                break
        elif follower.poll() is not None:
            break
        time.sleep(POLL)
    out, err = follower.communicate(timeout=120)
    recorder.wait()
    if reader is not None:
        reader.close()
    log = json.loads(log_path.read_text())
    arrivals, stamps = bytes_arrival(target, log, fmt)
    closed = target.stat().st_mtime_ns / 1e9
    changed = None
    final_frames = None
    if follower.returncode == 0:
        with ProxyReader(Path(out.strip())) as final:
            final_frames = len(final)
            changed = sum(hashlib.blake2b(final.jpeg(k), digest_size=16).digest() != d for k, d in digests.items() if k < final_frames)
    baseline = timed([sys.executable, "-m", "scrubproxy", "--cache-dir", str(case / "baseline"), "proxy", str(target), "--hwaccel", "none", "--force", "--quiet"], env=env)
    lags = [served[k] - arrivals[k] for k in sorted(served) if k < len(arrivals)]
    base = [closed - a + baseline["wall"] for a in arrivals]
    duration = stamps[-1] if stamps else 0.0
    window = min(60.0, duration / 3)
    early = [lag for lag, t in zip(lags, stamps) if t < window]
    late = [lag for lag, t in zip(lags, stamps) if t >= duration - window]
    recording_cpu = [c for t, c in cpu_samples if t <= (recorder_done or closed)]
    cores = (recording_cpu[-1] - cpu_start) / ((recorder_done or closed) - started) if recording_cpu else None
    result = {
        "case": name,
        "format": fmt,
        "frames": len(arrivals),
        "loop_frames": loop,
        "recorded_s": duration,
        "served_live": len(served),
        "final_frames": final_frames,
        "wrong_index": wrong[:20],
        "wrong_count": len(wrong),
        "changed": changed,
        "dropped": dropped,
        "follower_rc": follower.returncode,
        "follower_err": err[-2000:],
        "window_s": window,
        "follower_cores_while_recording": cores,
        "follower_cpu_s_total": (cpu_samples[-1][1] - cpu_start) if cpu_samples else None,
        "bursts": len({s for _, s in log}),
        "baseline_proxy": baseline,
        "load": [(round(t - started, 1), v) for t, v in loads],
        "lag_ms": [round(lag * 1000) for lag in lags],  # per frame, presentation order
    }
    for key, values in (("lag", lags), ("lag_first", early), ("lag_last", late), ("baseline", base)):
        if values:
            result[key] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values), "n": len(values)}
    shutil.rmtree(case, ignore_errors=True)
    return result


def verdict(r: dict) -> str:
    """Targets met, or which were missed."""
    missed = []
    lag = r.get("lag")
    if lag is None:
        return "missed: nothing served live"
    if lag["p95"] > TARGETS["p95"]:
        missed.append(f"p95 {lag['p95']:.2f} > {TARGETS['p95']}")
    if lag["max"] > TARGETS["max"]:
        missed.append(f"max {lag['max']:.2f} > {TARGETS['max']}")
    first, last = r.get("lag_first"), r.get("lag_last")
    if first and last and last["p95"] > first["p95"] + 0.25:
        missed.append("lag grows")
    if r["follower_cores_while_recording"] and r["follower_cores_while_recording"] > TARGETS["cores"]:
        missed.append(f"{r['follower_cores_while_recording']:.2f} cores")
    if r["wrong_count"] or r["served_live"] < r["frames"]:
        missed.append("not all exact")
    if r["changed"]:
        missed.append(f"{r['changed']} changed")
    return "met" if not missed else "missed: " + ", ".join(missed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180.0, help="1080p30 recording per format (the 60 s source looped)")
    ap.add_argument("--uhd-seconds", type=float, default=60.0, help="2160p30 recording, MKV (0: none)")
    ap.add_argument("--formats", default="matroska,mpegts")
    args = ap.parse_args()
    src_seconds = int(min(60, math.ceil(args.seconds)))
    cases = [(f"1080p30-{fmt}", source(1080, src_seconds), fmt, args.seconds) for fmt in args.formats.split(",") if fmt]
    if args.uhd_seconds:
        cases.append(("2160p30-matroska", source(2160, int(min(60, math.ceil(args.uhd_seconds)))), "matroska", args.uhd_seconds))
    work = Path(tempfile.mkdtemp(prefix="scrubproxy-bench-live-"))
    load_before = os.getloadavg()
    results = []
    try:
        for name, src, fmt, seconds in cases:
            print(f"{name}: {seconds:.0f} s at real time", file=sys.stderr, flush=True)
            results.append(run_case(name, src, fmt, seconds, work))
            print(json.dumps({k: v for k, v in results[-1].items() if k not in ("follower_err", "lag_ms", "load")}, default=str), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = save("live", {"measured": "ProxyReader in the client process, refresh() every 50 ms", "load_before": load_before, "load_after": os.getloadavg(), "results": results})

    def trio(d: dict | None) -> str:
        return f"{d['p50']:.2f} / {d['p95']:.2f} / {d['max']:.2f}" if d else "-"

    rows = []
    for r in results:
        cores = r["follower_cores_while_recording"]
        rows.append(
            [
                r["case"],
                f"{r['recorded_s']:.0f}",
                f"{r['served_live']}/{r['frames']}",
                f"{100 * (r['served_live'] - r['wrong_count']) / max(r['frames'], 1):.1f}%",
                "-" if r["changed"] is None else r["changed"],
                trio(r.get("lag")),
                f"{r['lag_first']['p95']:.2f} / {r['lag_last']['p95']:.2f}" if r.get("lag_first") and r.get("lag_last") else "-",
                f"{cores:.2f}" if cores is not None else "-",
                trio(r.get("baseline")),
                f"{r['baseline_proxy']['wall']:.1f}",
                verdict(r),
            ]
        )
    print(
        table(
            ["recording", "s", "frames live", "exact", "changed", "lag p50 / p95 / max s", "p95 first / last window s", "follower cores", "baseline lag p50 / p95 / max s", "proxy after close s", "targets"],
            rows,
        )
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
