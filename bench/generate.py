"""Proxy generation on every kind of source: scrubproxy against the reference's
ffmpeg command and against decoding alone, same run (issue 15).

Sources (made once by bench/common.py, ``--seconds`` long, 20 s by default;
the long-GOP one is at least 60 s, the length of the recordings the issue was
measured on, so that it holds three whole GOPs of 600):

    1080p30 H.264, GOP 600, 3 B-frames      1080p60 H.264, GOP 250, B-frames
    2160p30 H.264, GOP 120, B-frames        1080p30 HEVC (x265), GOP 250
    1080p30 variable-rate Matroska (H.264)  1080p30 10-bit HEVC (SDR, BT.709)
    1080p30 PQ HEVC (HDR10, tone-mapped), 4 s

For each source, three whole child processes under GNU time (wall, CPU, peak
RSS), in an order that rotates each round, ``--rounds`` rounds:

    ours       python -m scrubproxy proxy SRC --hwaccel none --force --quiet
    reference  ffmpeg -i SRC -vf scale=-2:360 -c:v mjpeg -q:v 5 -an OUT.mkv
    decode     ffmpeg [-skip_loop_filter noref] -i SRC -an -f null -   (our decoder's options: H.264 only)
    pyav-decode  the same decode in PyAV's own FFmpeg (python -c ..., PYAV_DECODE)

Medians, with the spread (min-max) over the rounds. Quality: PSNR of each
proxy against the source decoded in full (loop filter on), converted to RGB
with its own matrix and box-downscaled to 360 lines: RGB as every JPEG decoder
shows the proxy (BT.601), and luma against each proxy's own matrix (scaling +
compression loss alone). Where the time goes: ``perf record`` of one more of
our runs per source, CPU samples by library. Also: the CLI's start-up
(``--version``, ``--help``, ``path``, a cache hit of ``proxy``), alternating,
and a cache hit in the library.

    python bench/generate.py [--rounds 3] [--seconds 20] [--kinds h264-gop600,hevc]
"""

from __future__ import annotations

import argparse
import fractions
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import common
from common import cached_recording, percentile, save, table, timed

import av  # noqa: E402
import simplejpeg  # noqa: E402

from scrubproxy import ProxyCache, ProxySettings  # noqa: E402
from scrubproxy.decode import decoder_options  # noqa: E402
from scrubproxy.samples import make_hdr_recording, vfr_times  # noqa: E402

REFERENCE = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", "{src}", "-vf", "scale=-2:360", "-c:v", "mjpeg", "-q:v", "5", "-an", "{out}"]
DECODE_ONLY = ["ffmpeg", "-nostdin", "-loglevel", "error", "{options}", "-i", "{src}", "-an", "-f", "null", "-"]
#: Decoding alone in our own engine (PyAV's FFmpeg, which differs from the system
#: ffmpeg's), with the encoder's settings: frame threads, its loop-filter skipping.
PYAV_DECODE = (
    "import sys, av\n"
    "from scrubproxy.decode import decoder_options\n"
    "with av.open(sys.argv[1]) as c:\n"
    "    s = c.streams.video[0]\n"
    "    s.thread_type = 'AUTO'\n"
    "    s.codec_context.options = decoder_options(s.codec_context.name)\n"
    "    for _ in c.decode(s):\n"
    "        pass\n"
)
ENV = {"PYTHONPATH": str(common.BENCH.parent / "src")}
#: Targets of issue 15 (this 2-core machine).
MIN_SPEEDUP, MAX_OVER_DECODE, MAX_START_S = 1.6, 1.15, 0.25
MAX_RSS_MB = {1080: 300, 2160: 600}


#: x264's adaptive B-frame choice puts none in grainy sources: fixed B-frames
#: (3, the middle one a reference) make them the kind the issue names.
FIXED_B_FRAMES = (("x264-params", "b-adapt=0"),)


def _h264(name: str, seconds: int, rate: int = 30, height: int = 1080, gop: int = 250, **extra) -> Path:
    width = height * 16 // 9
    extra.setdefault("codec_options", FIXED_B_FRAMES)
    return cached_recording(name, frames=rate * seconds, width=width, height=height, rate=fractions.Fraction(rate), gop=gop, bframes=3, colorspace="ITU709", grain=6, **extra)


def _pq(seconds: int) -> Path:
    path = common.MEDIA / f"pq-1080p30-{seconds}s.mkv"
    if not path.exists():
        print(f"making {path.name} (slow, once)", file=sys.stderr)
        make_hdr_recording(path, "pq", frames=30 * seconds, width=1920, height=1080)
    return path


def _vfr(seconds: int) -> Path:
    # 30 fps nominal with stretches at 60, 30 and 20 fps and 10% dropped frames.
    times = [t for t in vfr_times(stretches=((60, 60 * seconds // 4), (30, 30 * seconds // 4), (20, 20 * seconds // 4), (60, 60 * seconds // 4)))]
    return cached_recording(f"vfr-1080p-b3-{seconds}s.mkv", frames=len(times), width=1920, height=1080, times=times, gop=250, bframes=3, colorspace="ITU709", grain=6, codec_options=FIXED_B_FRAMES)


#: kind -> (label, source maker(seconds), its seconds given ``--seconds``, source matrix (kr, kb))
BT709 = (0.2126, 0.0722)
KINDS: dict[str, tuple[str, Callable[[int], Path], Callable[[int], int]]] = {
    "h264-gop600": ("1080p30 H.264, GOP 600, B-frames", lambda s: _h264(f"h264-1080p30-gop600-b3-{s}s.mp4", s, gop=600), lambda s: max(s, 60)),
    "h264-1080p60": ("1080p60 H.264, GOP 250, B-frames", lambda s: _h264(f"h264-1080p60-b3-{s}s.mp4", s, rate=60), lambda s: s),
    "h264-2160p30": ("2160p30 H.264, GOP 120, B-frames", lambda s: _h264(f"h264-2160p30-b3-{s}s.mp4", s, height=2160, gop=120), lambda s: s),
    "hevc": ("1080p30 HEVC, GOP 250, B-frames", lambda s: _h264(f"hevc-1080p30-{s}s.mkv", s, codec="libx265", codec_options=(("x265-params", "log-level=error:bframes=3"),)), lambda s: s),
    "vfr-mkv": ("1080p variable-rate Matroska (H.264, 20-60 fps)", _vfr, lambda s: s),
    "hevc-10bit": ("1080p30 10-bit HEVC (SDR, BT.709)", lambda s: _h264(f"hevc10-1080p30-{s}s.mkv", s, codec="libx265", pix_fmt="yuv420p10le", codec_options=(("x265-params", "log-level=error"),)), lambda s: s),
    "pq": ("1080p30 PQ HEVC (HDR10, tone-mapped)", lambda s: _pq(4), lambda s: 4),
}


def ours_cmd(src: Path, cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "scrubproxy", "--cache-dir", str(cache_dir), "proxy", str(src), "--hwaccel", "none", "--force", "--quiet"]


def commands(src: Path, work: Path) -> dict[str, list[str]]:
    with av.open(str(src)) as c:
        options = decoder_options(c.streams.video[0].codec_context.name)
    flags = [x for k, v in options.items() for x in (f"-{k}", v)]
    return {
        "ours": ours_cmd(src, work / "cache"),
        "reference": [a.format(src=src, out=work / "ref.mkv") for a in REFERENCE],
        "decode": [x for a in DECODE_ONLY for x in (flags if a == "{options}" else [a.format(src=src)])],
        "pyav-decode": [sys.executable, "-c", PYAV_DECODE, str(src)],
    }


# --- quality -----------------------------------------------------------------


def truth_frames(src: Path, picks: set[int]) -> dict[int, np.ndarray]:
    """Source frames decoded in full (loop filter on), in RGB with their own
    matrix (BT.709 limited), box-downscaled to 360 lines."""
    out = {}
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for k, f in enumerate(c.decode(s)):
            if k in picks:
                rgb = f.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG", dst_color_range="JPEG", interpolation="POINT").to_ndarray().astype(np.float64)
                n = rgb.shape[0] // 360
                h, w = rgb.shape[0] // n * n, rgb.shape[1] // n * n
                out[k] = rgb[:h, :w].reshape(h // n, n, w // n, n, 3).mean(axis=(1, 3))
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


def quality(src: Path, ours: Path, ref: Path) -> dict:
    with av.open(str(src)) as c:
        frames = sum(1 for p in c.demux(video=0) if p.size)
    picks = set(np.linspace(0, frames - 1, 16).astype(int).tolist())
    truth = truth_frames(src, picks)
    result = {}
    for name, path, (kr, kb) in (("ours", ours, (0.299, 0.114)), ("reference", ref, BT709)):
        got = proxy_frames(path, picks)
        ks = sorted(set(got) & set(truth))
        rgb = [psnr(got[k][0][: truth[k].shape[0], : truth[k].shape[1]], truth[k][: got[k][0].shape[0], : got[k][0].shape[1]]) for k in ks]
        y = [psnr(got[k][1][: truth[k].shape[0], : truth[k].shape[1]], luma(truth[k], kr, kb)[: got[k][1].shape[0], : got[k][1].shape[1]]) for k in ks]
        result[name] = {"psnr_rgb": statistics.mean(rgb), "psnr_luma_own_matrix": statistics.mean(y), "frames_compared": len(ks)}
    return result


# --- where the time goes ------------------------------------------------------

#: perf's shared objects -> what they do in an encode.
_DSO_GROUPS = (
    ("libavcodec", "decode (libavcodec)"),
    ("libswscale", "scale (libswscale)"),
    ("libavfilter", "filters (libavfilter)"),
    ("turbojpeg", "JPEG (libjpeg-turbo)"),
    ("simplejpeg", "JPEG (libjpeg-turbo)"),
    ("_jpeg", "JPEG (libjpeg-turbo)"),
    ("libjpeg", "JPEG (libjpeg-turbo)"),
    ("numpy", "NumPy"),
    ("_multiarray", "NumPy"),
    ("libpython", "Python"),
    ("python3", "Python"),
    ("kernel", "kernel"),
    ("libc", "libc (memcpy, malloc)"),
    ("libavutil", "libavutil"),
)


def profile(cmd: list[str], work: Path) -> dict[str, float] | None:
    """Share of CPU samples by library in one run of ``cmd`` (perf record), or None without perf."""
    if shutil.which("perf") is None:
        return None
    data = work / "perf.data"
    rec = subprocess.run(["perf", "record", "-q", "-F", "250", "-o", str(data), "--", *cmd], capture_output=True, text=True, env={**os.environ, **ENV})
    if rec.returncode != 0:
        return None
    rep = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "--no-children"], capture_output=True, text=True)
    shares: dict[str, float] = {}
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*)$", line)
        if not m:
            continue
        dso = m.group(2).strip()
        group = next((g for key, g in _DSO_GROUPS if key in dso), f"other: {dso}")
        shares[group] = shares.get(group, 0.0) + float(m.group(1))
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


# --- start-up -----------------------------------------------------------------


def startup(src: Path, cache_dir: Path, rounds: int) -> dict[str, list[float]]:
    """Wall seconds of whole ``scrubproxy`` processes that do little: ``--version``,
    ``--help``, ``path`` and a cache hit of ``proxy``, alternating."""
    base = [sys.executable, "-m", "scrubproxy"]
    cases = {
        "--version": base + ["--version"],
        "--help": base + ["--help"],
        "path": base + ["--cache-dir", str(cache_dir), "path", str(src), "--hwaccel", "none"],
        "proxy (cache hit)": base + ["--cache-dir", str(cache_dir), "proxy", str(src), "--hwaccel", "none", "--quiet"],
    }
    out: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, cmd in cases.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **ENV})
            out[name].append(time.perf_counter() - t)
    return out


def hit_cost(src: Path, cache_dir: Path) -> dict:
    cache = ProxyCache(cache_dir)
    cache.ensure(src, settings=ProxySettings(hwaccel="none"))
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        cache.ensure(src, settings=ProxySettings(hwaccel="none"))
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(times), "p99_ms": percentile(times, 99)}


# --- one source kind ----------------------------------------------------------


def bench_kind(kind: str, seconds: int, rounds: int, work: Path, with_profile: bool) -> dict:
    label, make, length = KINDS[kind]
    src = make(length(seconds))
    kwork = work / kind
    kwork.mkdir()
    cmds = commands(src, kwork)
    runs: dict[str, list[dict]] = {side: [] for side in cmds}
    sides = list(cmds)
    for r in range(rounds):
        # Rotate the order each round, so that a slow spell of this shared
        # machine falls on every side alike.
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            runs[side].append(timed(cmds[side], env=ENV if side in ("ours", "pyav-decode") else None))
    proxy = ProxyCache(kwork / "cache").lookup(src, settings=ProxySettings(hwaccel="none"))
    assert proxy is not None
    q = quality(src, proxy, kwork / "ref.mkv") if kind != "pq" else {}
    prof = profile(cmds["ours"], kwork) if with_profile else None
    with av.open(str(src)) as c:
        height = c.streams.video[0].height
    return {
        "kind": kind, "label": label, "source": src.name, "seconds": length(seconds), "height": height, "runs": runs, "quality": q, "profile": prof,
        "sizes": {"ours": proxy.stat().st_size, "reference": (kwork / "ref.mkv").stat().st_size},
    }


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def report(results: list[dict], start: dict[str, list[float]], hit: dict) -> None:
    rows, checks = [], []
    for res in results:
        runs = res["runs"]
        wall = {side: [r["wall"] for r in runs[side]] for side in runs}
        speed = [r / o for o, r in zip(wall["ours"], wall["reference"])]
        over = [o / d for o, d in zip(wall["ours"], wall["decode"])]
        over_pyav = [o / d for o, d in zip(wall["ours"], wall["pyav-decode"])]
        q = res["quality"]
        rss = med([r["rss_mb"] for r in runs["ours"]])
        rows.append(
            [
                res["label"],
                f"{res['seconds'] / med(wall['ours']):.1f}x",
                " / ".join(f"{med(wall[side]):.2f}" for side in ("ours", "reference", "decode", "pyav-decode")),
                " / ".join(f"{med([r['cpu'] for r in runs[side]]):.1f}" for side in ("ours", "reference", "decode", "pyav-decode")),
                f"**{med(speed):.2f}x** ({spread(speed)})",
                f"**{med(over):.2f}** ({spread(over)})",
                f"{med(over_pyav):.2f} ({spread(over_pyav)})",
                f"{rss:.0f} / {med([r['rss_mb'] for r in runs['reference']]):.0f}",
                f"{q['ours']['psnr_luma_own_matrix']:.2f} / {q['reference']['psnr_luma_own_matrix']:.2f}" if q else "-",
                f"{q['ours']['psnr_rgb']:.2f} / {q['reference']['psnr_rgb']:.2f}" if q else "-",
            ]
        )
        limit = MAX_RSS_MB[2160 if res["height"] > 1080 else 1080]
        dq = q["ours"]["psnr_luma_own_matrix"] - q["reference"]["psnr_luma_own_matrix"] if q else 0.0
        checks.append(
            f"{res['kind']}: speed {'met' if med(speed) >= MIN_SPEEDUP else 'MISSED'} ({med(speed):.2f}x), "
            f"over decode {'met' if med(over) <= MAX_OVER_DECODE else 'MISSED'} ({med(over):.2f}; {med(over_pyav):.2f} over PyAV's), "
            f"RSS {'met' if rss <= limit else 'MISSED'} ({rss:.0f} <= {limit} MB), "
            f"luma {'met' if dq >= -0.5 else 'MISSED'} ({dq:+.2f} dB)"
        )
    print(
        table(
            ["source", "ours x realtime", "wall s ours / ref / decode / PyAV decode", "CPU s ours / ref / decode / PyAV decode", "ref wall / ours (spread)", "ours wall / decode (spread)", "ours wall / PyAV decode", "peak RSS MB ours / ref", "PSNR luma dB ours / ref", "PSNR RGB dB ours / ref"],
            rows,
        )
    )
    print()
    for line in checks:
        print(line)
    print()
    print("where our CPU goes (perf, one more run each, % of samples):")
    for res in results:
        if res["profile"]:
            print(f"  {res['kind']}: " + ", ".join(f"{k} {v:.0f}%" for k, v in res["profile"].items() if v >= 1))
    print()
    for name, values in start.items():
        verdict = "met" if med(values) <= MAX_START_S else "MISSED"
        print(f"start-up {name}: median {med(values):.3f} s ({spread(values, '{:.3f}')} over {len(values)}), target {MAX_START_S} s {verdict}")
    print(f"cache hit (ensure on a valid proxy, in-process): median {hit['median_ms']:.3f} ms, p99 {hit['p99_ms']:.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--startup-rounds", type=int, default=10)
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("the bench compares against the system ffmpeg: install it")
    kinds = args.kinds.split(",")
    # An installed package has its bytecode; this sandbox sets PYTHONDONTWRITEBYTECODE,
    # which would make every child compile scrubproxy from source (0.25 s a start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(common.BENCH.parent / "src" / "scrubproxy")], check=True)
    for kind in kinds:  # make every source first, so that making none is timed
        KINDS[kind][1](KINDS[kind][2](args.seconds))
    work = Path(tempfile.mkdtemp(prefix="scrubproxy-bench-"))
    load = os.getloadavg()[0]
    try:
        results = [bench_kind(kind, args.seconds, args.rounds, work, not args.no_profile) for kind in kinds]
        first = results[0]
        src = Path(common.MEDIA / first["source"])
        start = startup(src, work / first["kind"] / "cache", args.startup_rounds)
        hit = hit_cost(src, work / first["kind"] / "cache")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"rounds": args.rounds, "seconds": args.seconds, "load_before": load, "load_after": os.getloadavg()[0], "results": results, "startup": start, "hit": hit}
    out = save("generate", summary)
    report(results, start, hit)
    print(f"load average before/after: {load:.1f} / {os.getloadavg()[0]:.1f}; results: {out}")


if __name__ == "__main__":
    main()
