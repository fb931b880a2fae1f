"""Frame map: open time at one hour of 60 fps, and exactness in a Matroska proxy over 1 GiB.

1. A frame map of 216,000 frames (one hour at 60 fps): time to open it (memory
   map) and to answer time_of / index_at.
2. A Matroska proxy over 1 GiB, built with PyAV's muxer as the encoder writes
   proxies (one MJPEG block per frame, pts in ms): its frame map is made by the
   encoder's own indexing step, then every frame's JPEG is read through the map
   and the index painted into it is checked, across the 1 GiB boundary; and
   opening the frame map is timed against PyAV opening the file's own index.

    python bench/framemap.py [--gib 1.1]
"""

from __future__ import annotations

import argparse
import fractions
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import simplejpeg

from common import open_times_ms, percentile, save, table

from scrubproxy.mux import PROXY_CONTAINER, PROXY_TIME_BASE, index_proxy  # noqa: E402
from scrubproxy.framemap import FrameMap, FrameMapHeader, write_frame_map  # noqa: E402
from scrubproxy.samples import PatternPainter, read_index  # noqa: E402

DISTINCT = 64


def one_hour_map(folder: Path) -> dict:
    n = 216_000
    path = folder / "hour.frames"
    pts = np.arange(n, dtype=np.int64) * 256
    header = FrameMapHeader(n, fractions.Fraction(1, 15360), 0, fractions.Fraction(1, 60), 0, b"\0" * 16)
    write_frame_map(path, header, pts, np.arange(n, dtype=np.int64), np.arange(n, dtype=np.uint64) * 30000, np.full(n, 29000, np.uint32))
    opens = open_times_ms(lambda: FrameMap(path), 300)
    fm = FrameMap(path)
    t = time.perf_counter()
    first_time = fm.time_of(123_456)  # computes the times column once
    first_lookup_ms = (time.perf_counter() - t) * 1000
    lookups = []
    rng = np.random.default_rng(1)
    for k in rng.integers(0, n, 2000):
        t = time.perf_counter()
        assert fm.index_at(fm.time_of(int(k))) == k
        lookups.append((time.perf_counter() - t) * 1000)
    fm.close()
    return {
        "frames": n,
        "size_mb": path.stat().st_size / 1e6,
        "open_median_ms": statistics.median(opens),
        "open_p99_ms": percentile(opens, 99),
        "first_time_query_ms": first_lookup_ms,
        "time_of_plus_index_at_median_ms": statistics.median(lookups),
        "check": first_time == 123_456 / 60,
    }


def big_proxy(folder: Path, gib: float) -> dict:
    """Mux ``gib`` GiB of distinct JPEG frames (frame k shows k % 64) into one
    Matroska file, as the encoder's ``mux.ProxyWriter`` does (pts in ms)."""
    painter = PatternPainter(1920, 1080, grain=40)
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = 1920, 1080, "yuvj420p"
    cc.time_base = fractions.Fraction(1, 60)
    cc.qscale, cc.qmin, cc.qmax = True, 2, 2
    jpegs = []
    for k in range(DISTINCT):
        frame = av.VideoFrame.from_ndarray(painter.paint(k), format="rgb24").reformat(format="yuvj420p", dst_color_range="JPEG")
        frame.pts = k
        jpegs += [bytes(p) for p in cc.encode(frame)]
    jpegs += [bytes(p) for p in cc.encode(None)]
    total = int(gib * 2**30 / statistics.mean(len(j) for j in jpegs)) + 1
    path = folder / f"big.{PROXY_CONTAINER}"
    t = time.perf_counter()
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg")
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuvj420p"
        stream.time_base = stream.codec_context.time_base = PROXY_TIME_BASE
        stream.codec_context.color_range = 2
        for k in range(total):
            packet = av.Packet(jpegs[k % DISTINCT])
            packet.pts = packet.dts = round(k * 1000 / 60)
            packet.time_base = PROXY_TIME_BASE
            packet.is_keyframe = True
            packet.stream = stream
            out.mux(packet)
    write_s = time.perf_counter() - t
    size = path.stat().st_size
    t = time.perf_counter()
    pts, offsets, sizes, tb = index_proxy(path)
    index_s = time.perf_counter() - t
    frames_path = folder / "big.frames"
    write_frame_map(frames_path, FrameMapHeader(len(pts), tb, 0, tb, size, b"\0" * 16), pts, pts, offsets, sizes)
    # Baseline: what opening the proxy's own index (Matroska cues) costs a reader without a frame map.
    t = time.perf_counter()
    with av.open(str(path)) as c:
        entries = len(c.streams.video[0].index_entries)
    pyav_open_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    fm = FrameMap(frames_path)
    map_open_ms = (time.perf_counter() - t) * 1000
    wrong = []
    beyond = 0
    with open(path, "rb") as f:
        for k in range(len(fm)):
            off, n = int(fm.offsets[k]), int(fm.sizes[k])
            beyond += off > 2**30
            f.seek(off)
            data = f.read(n)
            if k % 7 == 0 or off > 2**30 - 5 * n and off < 2**30 + 5 * n or k >= len(fm) - 3:
                if read_index(simplejpeg.decode_jpeg(data, colorspace="RGB")) != k % DISTINCT:
                    wrong.append(k)
            elif data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
                wrong.append(k)
    fm.close()
    return {
        "size_gib": size / 2**30,
        "frames": total,
        "frames_mapped": int(len(pts)),
        "frames_beyond_1gib": beyond,
        "pts_exact": bool(np.array_equal(pts, np.round(np.arange(total) * 1000 / 60).astype(np.int64))),
        "pyav_index_entries": entries,
        "write_s": write_s,
        "index_s": index_s,
        "pyav_open_ms": pyav_open_ms,
        "framemap_open_ms": map_open_ms,
        "wrong_frames": wrong[:20],
        "exact": not wrong and len(pts) == total,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.1)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scrubproxy-framemap-"))
    try:
        hour = one_hour_map(folder)
        big = big_proxy(folder, args.gib)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = save("framemap", {"one_hour": hour, "big_proxy": big})
    print(table(["frame map", "frames", "size MB", "open median ms", "open p99 ms", "time_of+index_at median ms"], [["1 h at 60 fps", hour["frames"], f"{hour['size_mb']:.1f}", f"{hour['open_median_ms']:.3f}", f"{hour['open_p99_ms']:.3f}", f"{hour['time_of_plus_index_at_median_ms']:.4f}"]]))
    print()
    print(
        table(
            ["proxy over 1 GiB", "size GiB", "frames", "beyond 1 GiB", "pts exact", "frames exact", "open: frame map ms", "open: PyAV index ms", "PyAV index entries"],
            [["Matroska", f"{big['size_gib']:.2f}", big["frames"], big["frames_beyond_1gib"], big["pts_exact"], "100%" if big["exact"] else f"WRONG {big['wrong_frames']}", f"{big['framemap_open_ms']:.3f}", f"{big['pyav_open_ms']:.1f}", big["pyav_index_entries"]]],
        )
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
