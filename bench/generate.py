"""Proxy generation: scrubproxy's encode against the reference's ffmpeg command, same run.

Source: 30 s of 1080p60 H.264 (GOP 250, B-frames, grain), made once by
bench/common.py. Each side runs as a child process under GNU time (wall, CPU,
peak RSS), alternating, ``--rounds`` times; medians are reported. Quality:
PSNR of each proxy against the source decoded in full and box-downscaled,
(a) in RGB as every player decodes a JPEG (BT.601), which includes the
reference's colour-matrix error, and (b) in luma against each proxy's own
matrix, which isolates scaling + compression loss. Also: a 4K source's peak
RSS, the cost of a cache hit in the library, and a row for a 1080p PQ (HDR10)
HEVC source, tone-mapped to SDR, with the filter chain's cost per frame
against the SDR chain's.

    python bench/generate.py [--rounds 3] [--seconds 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from common import hd_source, percentile, save, table, timed, uhd_source

import av  # noqa: E402
import simplejpeg  # noqa: E402

from scrubproxy import ProxyCache, ProxySettings  # noqa: E402

REFERENCE = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", "{src}", "-vf", "scale=-2:360", "-c:v", "mjpeg", "-q:v", "5", "-an", "{out}"]


def ours_cmd(src: Path, cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "scrubproxy", "--cache-dir", str(cache_dir), "proxy", str(src), "--hwaccel", "none", "--force", "--quiet"]


def truth_frames(src: Path, picks: set[int]) -> dict[int, np.ndarray]:
    """Source frames decoded in full (loop filter on), converted to RGB with
    their own matrix (BT.709 limited) and box-downscaled by 3 to 640x360."""
    out = {}
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for k, f in enumerate(c.decode(s)):
            if k in picks:
                rgb = f.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG", dst_color_range="JPEG", interpolation="POINT").to_ndarray().astype(np.float64)
                h, w = rgb.shape[0] // 3 * 3, rgb.shape[1] // 3 * 3
                out[k] = rgb[:h, :w].reshape(h // 3, 3, w // 3, 3, 3).mean(axis=(1, 3))
    return out


def proxy_frames(path: Path, picks: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(RGB as a JPEG decoder shows it, raw luma plane) of the picked proxy frames."""
    out = {}
    with av.open(str(path)) as c:
        for k, p in enumerate(x for x in c.demux(video=0) if x.size):
            if k in picks:
                data = bytes(p)
                rgb = simplejpeg.decode_jpeg(data, colorspace="RGB").astype(np.float64)
                luma = simplejpeg.decode_jpeg(data, colorspace="GRAY")[..., 0].astype(np.float64)
                out[k] = (rgb, luma)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def luma(rgb: np.ndarray, kr: float, kb: float) -> np.ndarray:
    return kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]


def quality(src: Path, ours: Path, ref: Path, frames: int) -> dict:
    picks = set(np.linspace(0, frames - 1, 24).astype(int).tolist())
    truth = truth_frames(src, picks)
    result = {}
    for name, path, (kr, kb) in (("ours", ours, (0.299, 0.114)), ("reference", ref, (0.2126, 0.0722))):
        got = proxy_frames(path, picks)
        ks = sorted(set(got) & set(truth))
        rgb = [psnr(got[k][0][: truth[k].shape[0], : truth[k].shape[1]], truth[k]) for k in ks]
        y = [psnr(got[k][1][: truth[k].shape[0], : truth[k].shape[1]], luma(truth[k], kr, kb)) for k in ks]
        result[name] = {"psnr_rgb": statistics.mean(rgb), "psnr_luma_own_matrix": statistics.mean(y), "frames_compared": len(ks)}
    return result


def hit_cost(src: Path, cache_dir: Path) -> dict:
    cache = ProxyCache(cache_dir)
    cache.ensure(src, settings=ProxySettings(hwaccel="none"))
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        cache.ensure(src, settings=ProxySettings(hwaccel="none"))
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(times), "p99_ms": percentile(times, 99)}


def pq_source(seconds: int = 4) -> Path:
    """1080p30 10-bit HEVC, PQ, BT.2020, HDR10 metadata (MaxCLL 1000): made once."""
    from scrubproxy.samples import make_hdr_recording

    path = common.MEDIA / f"pq-1080p30-{seconds}s.mkv"
    if not path.exists():
        make_hdr_recording(path, "pq", frames=30 * seconds, width=1920, height=1080)
    return path


def chain_ms(src: Path, frames: int = 60) -> float:
    """Median cost (ms) of the proxy filter chain on one decoded frame of ``src``, one thread."""
    import av.filter

    from scrubproxy.encode import filter_chain, proxy_geometry
    from scrubproxy.probe import probe

    info = probe(src)
    with av.open(str(src)) as c:
        frame = next(c.decode(video=0))
    graph = av.filter.Graph()
    graph.threads = 1  # as each conversion worker runs it
    node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=frame.time_base)
    for name, args in filter_chain(info, proxy_geometry(info, ProxySettings())):
        nxt = graph.add(name, args) if args else graph.add(name)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        graph.push(frame)
        graph.pull()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def pq_row(work: Path) -> dict:
    """Encode the PQ source as a child process, and the chain costs (HDR, and SDR on the H.264 source)."""
    src = pq_source()
    run = timed(ours_cmd(src, work / "cache-pq"), env={"PYTHONPATH": str(common.BENCH.parent / "src")})
    proxy = ProxyCache(work / "cache-pq").lookup(src, settings=ProxySettings(hwaccel="none"))
    return {"run": run, "seconds": 4.0, "size": proxy.stat().st_size if proxy else None, "chain_ms_pq": chain_ms(src), "chain_ms_sdr": chain_ms(hd_source(2))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    src = hd_source(args.seconds)
    duration = float(args.seconds)
    have_ffmpeg = shutil.which("ffmpeg") is not None
    work = Path(tempfile.mkdtemp(prefix="scrubproxy-bench-"))
    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    try:
        for round_ in range(args.rounds):
            # Each round runs both sides back to back, in alternating order, so
            # that a slow spell of this shared machine hits both sides alike.
            order = ("ours", "reference") if round_ % 2 == 0 else ("reference", "ours")
            for side in order:
                if side == "ours":
                    runs["ours"].append(timed(ours_cmd(src, work / "cache"), env={"PYTHONPATH": str(common.BENCH.parent / "src")}))
                elif have_ffmpeg:
                    runs["reference"].append(timed([a.format(src=src, out=work / "ref.avi") for a in REFERENCE]))
        ours_proxy = ProxyCache(work / "cache").lookup(src, settings=ProxySettings(hwaccel="none"))
        assert ours_proxy is not None
        frames = 60 * args.seconds
        q = quality(src, ours_proxy, work / "ref.avi", frames) if have_ffmpeg else {}
        uhd = uhd_source()
        uhd_run = timed(ours_cmd(uhd, work / "cache4k"), env={"PYTHONPATH": str(common.BENCH.parent / "src")})
        hit = hit_cost(src, work / "cache")
        pq = pq_row(work)
        sizes = {"ours": ours_proxy.stat().st_size, "reference": (work / "ref.avi").stat().st_size if have_ffmpeg else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    summary = {"source": src.name, "duration_s": duration, "rounds": args.rounds, "runs": runs, "quality": q, "uhd": uhd_run, "hit": hit, "sizes": sizes, "pq": pq}
    rows = []
    for side in ("ours", "reference"):
        if not runs[side]:
            continue
        wall = med(side, "wall")
        rows.append(
            [
                "scrubproxy" if side == "ours" else "reference ffmpeg command",
                f"{duration / wall:.2f}x",
                f"{wall:.2f}",
                f"{med(side, 'cpu'):.1f}",
                f"{med(side, 'rss_mb'):.0f}",
                f"{sizes[side] / 1e6 / (duration / 60):.0f}",
                f"{q[side]['psnr_rgb']:.2f}" if q else "-",
                f"{q[side]['psnr_luma_own_matrix']:.2f}" if q else "-",
            ]
        )
    pq_wall = pq["run"]["wall"]
    rows.append(
        [
            "scrubproxy, 1080p30 PQ HEVC (tone-mapped)",
            f"{pq['seconds'] / pq_wall:.2f}x",
            f"{pq_wall:.2f}",
            f"{pq['run']['cpu']:.1f}",
            f"{pq['run']['rss_mb']:.0f}",
            f"{pq['size'] / 1e6 / (pq['seconds'] / 60):.0f}" if pq["size"] else "-",
            "-",
            "-",
        ]
    )
    speedup = med("reference", "wall") / med("ours", "wall") if runs["reference"] else None
    paired = sorted(r["wall"] / o["wall"] for o, r in zip(runs["ours"], runs["reference"]))
    summary["speedup_vs_reference"] = speedup
    summary["speedup_per_round"] = paired
    out = save("generate", summary)
    print(table(["encoder", "x realtime", "wall s", "CPU s", "peak RSS MB", "MB per min", "PSNR RGB dB", "PSNR luma dB"], rows))
    print()
    if speedup:
        print(f"speed ratio (reference wall / ours): {speedup:.2f}x (medians); per round: {', '.join(f'{x:.2f}x' for x in paired)}")
    print(f"4K source ({uhd.name}): peak RSS {uhd_run['rss_mb']:.0f} MB, {3 / uhd_run['wall']:.2f}x realtime")
    print(f"filter chain per 1080p frame, one thread: PQ tone map {pq['chain_ms_pq']:.2f} ms, SDR {pq['chain_ms_sdr']:.2f} ms")
    print(f"cache hit (ensure on a valid proxy, in-process): median {hit['median_ms']:.3f} ms, p99 {hit['p99_ms']:.3f} ms")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
