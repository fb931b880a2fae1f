"""Exact seeks in mpv over JSON IPC: the all-intra proxy against the 1080p60 GOP-250 H.264 source, same run.

Each seek is timed from sending ``seek <t> absolute+exact`` to mpv's
``playback-restart`` event (the frame is on screen), with ``--vo=null``.
After every seek (untimed) mpv's screenshot of the video frame is read back
for the index painted into it, so accuracy is what mpv showed, not what we
asked for. The proxy is played through ``Player`` (its EDL and frame map); the
source by a plain mpv on the file, aimed the same way (frame-map pts through
mpv's own demuxer-start-time). Both get the same random frames; the source,
at hundreds of milliseconds a seek, gets the first ``--source-seeks`` of them.
A third run plays the same recording three times over as one session (an EDL
of three Matroska parts), with random seeks that cross the joins.

    python bench/mpv_seek.py [--seeks 300] [--source-seeks 60] [--seconds 30]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import MEDIA, hd_source, percentile, save, table

from scrubproxy import Player, ProxyCache  # noqa: E402
from scrubproxy.player.mpvipc import MpvProcess  # noqa: E402
from scrubproxy.reader import ProxyReader  # noqa: E402
from scrubproxy.samples import read_index  # noqa: E402
from scrubproxy.player.edl import AIM_AFTER  # noqa: E402


def read_shot(path: Path) -> int:
    with Image.open(path) as img:
        return read_index(np.asarray(img.convert("RGB")))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_proxy(sources: list[Path], cache: ProxyCache, frames: list[int], folder: Path, session: str | None = None) -> dict:
    times, shown = [], []
    with Player(sources, session, cache, headless=True) as p:
        for g in frames:
            t = time.perf_counter()
            p.seek_frame(g)  # seek command -> playback-restart
            times.append((time.perf_counter() - t) * 1000)
            shown.append(read_shot(p.screenshot(folder / "proxy.jpg")))
        rss = peak_rss_mb(p.pid)
    return {"times_ms": times, "shown": shown, "rss_mb": rss}


def bench_source(source: Path, pts_seconds: np.ndarray, frames: list[int], folder: Path) -> dict:
    """A plain mpv on the source, with the options Player uses, aimed by the frame map."""
    args = ["--no-config", "--vo=null", "--ao=null", "--audio=no", "--pause", "--hr-seek=yes", "--keep-open=always", "--cache=yes", "--", str(source)]
    proc = MpvProcess(args, folder / "source.sock", folder / "source.log")
    try:
        mpv = proc.connect(15)
        mpv.timeout = 30
        mpv.wait_event("playback-restart")
        start = mpv.get("demuxer-start-time") or 0.0
        times, shown = [], []
        for k in frames:
            mpv.clear_events()
            t = time.perf_counter()
            mpv.command("seek", float(pts_seconds[k]) - start + AIM_AFTER, "absolute+exact")
            mpv.wait_event("playback-restart")
            times.append((time.perf_counter() - t) * 1000)
            mpv.command("screenshot-to-file", str(folder / "source.jpg"), "video")
            shown.append(read_shot(folder / "source.jpg"))
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.stop()
    return {"times_ms": times, "shown": shown, "rss_mb": rss}


def summary(name: str, frames: list[int], result: dict) -> dict:
    t = result["times_ms"]
    exact = sum(int(a == b) for a, b in zip(frames, result["shown"]))
    return {
        "target": name,
        "seeks": len(t),
        "median_ms": statistics.median(t),
        "p95_ms": percentile(t, 95),
        "max_ms": max(t),
        "exact": exact,
        "exact_pct": 100.0 * exact / len(t),
        "mpv_peak_rss_mb": result["rss_mb"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeks", type=int, default=300)
    ap.add_argument("--source-seeks", type=int, default=60)
    ap.add_argument("--seconds", type=int, default=30, help="length of the 1080p60 source (>= 10)")
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()
    source = hd_source(max(10, opts.seconds))
    cache = ProxyCache(MEDIA / "cache")
    started = time.perf_counter()
    proxy_path = cache.ensure(source)
    print(f"proxy ready in {time.perf_counter() - started:.1f} s: {proxy_path}")
    with ProxyReader(proxy_path) as r:
        n = len(r)
        pts = r.frame_map.source_pts.astype(np.float64) * float(r.frame_map.header.source_time_base)
    rng = random.Random(opts.seed)
    frames = [rng.randrange(n) for _ in range(opts.seeks)]
    folder = Path(tempfile.mkdtemp(prefix="mpv-seek-"))
    try:
        proxy = bench_proxy([source], cache, frames, folder)
        # the same recording three times over: an EDL of three Matroska parts, seeks crossing joins
        session_frames = [rng.randrange(3 * n) for _ in range(opts.seeks)]
        session = bench_proxy([source] * 3, cache, session_frames, folder, session="bench-session")
        src_frames = frames[: opts.source_seeks]
        src = bench_source(source, pts, src_frames, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [
        summary(f"proxy ({proxy_path.suffix[1:]}, 360p MJPEG)", frames, proxy),
        summary("source (1080p60 H.264, GOP 250, B-frames)", src_frames, src),
        summary("3-segment session of proxies (mkv EDL)", [g % n for g in session_frames], session),
    ]
    ratio = rows[1]["median_ms"] / rows[0]["median_ms"]
    targets = {
        "proxy_exact_100pct": rows[0]["exact"] == rows[0]["seeks"] and rows[2]["exact"] == rows[2]["seeks"],
        "median_ratio_ge_50": ratio >= 50,
        "proxy_p95_le_10ms": rows[0]["p95_ms"] <= 10,
    }
    path = save("mpv_seek", {"source": str(source), "frames": n, "rows": rows, "median_ratio": ratio, "targets": targets, "raw": {"proxy": proxy, "source": src, "session": session, "frames": frames, "session_frames": session_frames}})
    print(
        table(
            ["target", "seeks", "median ms", "p95 ms", "max ms", "exact", "mpv peak RSS MB"],
            [[r["target"], r["seeks"], f"{r['median_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['max_ms']:.1f}", f"{r['exact']}/{r['seeks']} ({r['exact_pct']:.0f}%)", f"{r['mpv_peak_rss_mb']:.0f}"] for r in rows],
        )
    )
    print(f"\nmedian seek: source / proxy = {ratio:.0f}x; targets: {targets}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
