"""Proxies on a Dask cluster against the local path, same run.

(a) throughput: 8 segments of 1080p60 on a 2-worker LocalCluster (processes,
    one thread each) against ``ProxyCache.ensure`` in 2 threads;
(b) per-segment overhead: 500 tiny segments (0.2 s, 320x180), same two sides;
(c) fault: (a) again with the busiest worker SIGKILLed once 40 % of the frames
    are done: extra wall time, every segment committed once, nothing partial.

Segments are hard links of one recording under distinct names (distinct
proxies, no duplicate media on disk). Each round alternates local and cluster
in a fresh cache; medians are reported. The cluster is started once and its
start-up (and one warm-up task per worker, which imports PyAV) is reported
on its own: ``--scheduler local`` pays it per command.

    python bench/distributed.py [--rounds 3] [--seconds 4] [--tiny 500]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# This file's name is also the Dask package's: look here only after site-packages.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import distributed
from common import cached_recording, hd_source, save, table

from scrubproxy import ProxyCache, ProxyReader, ProxySettings
from scrubproxy.cache import TEMP_FILE_RE
from scrubproxy.cluster import PROGRESS_TOPIC, ensure_on
from scrubproxy.samples import read_index

SETTINGS = ProxySettings(hwaccel="none")


def segments(src: Path, folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        link = folder / f"seg-{i:04d}{src.suffix}"
        os.link(src, link)
        out.append(link)
    return out


def run_local(sources: list[Path], root: Path) -> float:
    cache = ProxyCache(root)
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: cache.ensure(s, "b", SETTINGS), sources))
    return time.perf_counter() - t


def run_cluster(client: distributed.Client, sources: list[Path], root: Path) -> float:
    t = time.perf_counter()
    ensure_on(client, sources, "b", SETTINGS, cache_root=root)
    return time.perf_counter() - t


def run_with_kill(client: distributed.Client, sources: list[Path], root: Path, frames_total: int) -> tuple[float, bool]:
    """(wall, whether a worker was killed) for the sources with one worker SIGKILLed at 40 %."""
    pids = client.run(os.getpid)
    done: dict[str, int] = {}
    killed: list[str] = []

    def on_event(event) -> None:
        msg = event[1]
        done[msg["key"]] = msg["done"]
        if not killed and sum(done.values()) >= 0.4 * frames_total and msg["worker"] in pids:
            killed.append(msg["worker"])
            os.kill(pids[msg["worker"]], signal.SIGKILL)

    client.subscribe_topic(PROGRESS_TOPIC, on_event)
    try:
        wall = run_cluster(client, sources, root)
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
    client.wait_for_workers(2, timeout=60)  # the nanny brings the killed one back
    return wall, bool(killed)


def audit(root: Path, sources: list[Path], frames: int) -> dict:
    """Every segment committed once and exact; no temporary or orphan file left."""
    cache = ProxyCache(root)
    entries = cache.entries("b")
    temps = [p for p in root.rglob("*") if TEMP_FILE_RE.fullmatch(p.name)]
    exact = 0
    for s in sources:
        proxy = cache.lookup(s, "b", SETTINGS)
        with ProxyReader(proxy) as r:
            exact += len(r) == frames and all(read_index(r[k]) == k for k in range(0, frames, 7))
    return {"valid": sum(e.state == "valid" for e in entries), "entries": len(entries), "partial_files": len(temps), "exact": exact}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4, help="length of each 1080p60 segment")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--tiny", type=int, default=500)
    args = ap.parse_args()

    hd = hd_source(args.seconds)
    hd_frames = 60 * args.seconds
    tiny = cached_recording("tiny-320x180-0.2s.mp4", frames=6, width=320, height=180, gop=6, bframes=0)
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    hd_sources = segments(hd, work / "hd", args.segments)
    tiny_sources = segments(tiny, work / "tiny", args.tiny)

    t = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    startup = time.perf_counter() - t
    ensure_on(client, tiny_sources[:2], "b", SETTINGS, cache_root=work / "warm-up")  # workers import scrubproxy, PyAV once

    walls: dict[str, list[float]] = {k: [] for k in ("a_local", "a_cluster", "b_local", "b_cluster", "c_cluster")}
    audits = []
    n = 0
    for r in range(args.rounds):
        for name, fn, srcs in (("a_local", run_local, hd_sources), ("a_cluster", None, hd_sources), ("b_local", run_local, tiny_sources), ("b_cluster", None, tiny_sources)):
            n += 1
            root = work / f"cache-{n}"
            walls[name].append(fn(srcs, root) if fn else run_cluster(client, srcs, root))
            print(f"round {r + 1} {name}: {walls[name][-1]:.2f} s", file=sys.stderr)
        n += 1
        root = work / f"cache-{n}"
        wall, killed = run_with_kill(client, hd_sources, root, hd_frames * len(hd_sources))
        walls["c_cluster"].append(wall)
        audits.append({**audit(root, hd_sources, hd_frames), "killed": killed})
        print(f"round {r + 1} c_cluster (worker killed: {killed}): {wall:.2f} s {audits[-1]}", file=sys.stderr)
    client.close()
    cluster.close()

    med = {k: statistics.median(v) for k, v in walls.items()}
    a_ratio = med["a_local"] / med["a_cluster"]
    b_extra_ms = (med["b_cluster"] - med["b_local"]) / args.tiny * 1000
    c_extra = med["c_cluster"] - med["a_cluster"]
    all_ok = all(a["killed"] and a["valid"] == a["entries"] == a["exact"] == len(hd_sources) and a["partial_files"] == 0 for a in audits)
    rows = [
        [f"(a) {args.segments} x {args.seconds} s 1080p60", f"{med['a_local']:.2f} s", f"{med['a_cluster']:.2f} s", f"{a_ratio:.2f}x local throughput", ">= 0.9x", "yes" if a_ratio >= 0.9 else "NO"],
        [f"(b) {args.tiny} x 0.2 s 320x180", f"{med['b_local']:.2f} s", f"{med['b_cluster']:.2f} s", f"{b_extra_ms:+.1f} ms/segment", "<= 20 ms", "yes" if b_extra_ms <= 20 else "NO"],
        ["(c) (a) with a worker SIGKILLed at 40 %", "", f"{med['c_cluster']:.2f} s", f"{c_extra:+.2f} s; " + "; ".join(f"{a['valid']}/{a['entries']} valid, {a['exact']} exact, {a['partial_files']} partial" for a in audits), "all complete, 0 partial", "yes" if all_ok else "NO"],
    ]
    print(table(["case", "local (2 threads)", "cluster (2 workers)", "result", "target", "met"], rows))
    print(f"cluster start-up (not in the walls): {startup:.2f} s; medians of {args.rounds} rounds")
    path = save("distributed", {"args": vars(args), "walls": walls, "medians": med, "a_ratio": a_ratio, "b_extra_ms": b_extra_ms, "c_extra_s": c_extra, "audits": audits, "startup_s": startup})
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
