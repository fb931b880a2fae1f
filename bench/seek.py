"""Random frame access: the proxy (jpeg bytes, RGB pixels) against exact seeks in the source, same run.

500 random frames of a 1080p60 GOP-250 H.264 source. Each method gets the
same frames and is checked for accuracy by reading the index painted into
every frame. The exact PyAV source seek (keyframe before, decode forward) and
decord (when installed) cost hundreds of milliseconds each, so they run on the
first ``--source-frames`` of the same list.

    python bench/seek.py [--frames 500] [--source-frames 60] [--seconds 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import av
import numpy as np
import simplejpeg

from common import hd_source, open_times_ms, percentile, save, table

from scrubproxy import ProxyCache, ProxySettings  # noqa: E402
from scrubproxy.reader import ProxyReader  # noqa: E402
from scrubproxy.samples import read_index  # noqa: E402


def timed_calls(fn, ks, check, check_apart=False):
    """Time ``fn(k)`` for each k and count how many results ``check`` reads back as k.

    Results are dropped at once: keeping hundreds alive would time the
    allocator's fresh pages, not the reader. For calls of microseconds
    (``check_apart``) the check runs in a second pass over the same frames, so
    that decoding a check picture between two calls does not evict what the
    next call uses; slow calls are checked as they go.
    """
    times, exact = [], 0
    for k in ks:
        t = time.perf_counter()
        result = fn(k)
        times.append((time.perf_counter() - t) * 1000)
        if not check_apart:
            exact += check(result) == k
    if check_apart:
        exact = sum(check(fn(k)) == k for k in ks)
    return times, exact


def pyav_exact(src):
    """The usual exact seek: to the keyframe at or before frame k's pts, then decode forward."""
    with av.open(str(src)) as c:
        pts = sorted(p.pts for p in c.demux(video=0) if p.size)
    container = av.open(str(src))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"

    def get(k):
        container.seek(pts[k], stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts >= pts[k]:
                return frame.to_ndarray(format="rgb24")
        raise LookupError(k)

    return get


def decord_reader(src):
    try:
        import decord
    except ImportError:
        return None
    vr = decord.VideoReader(str(src), ctx=decord.cpu(0))
    return lambda k: vr[k].asnumpy()


def jpeg_decoders(reader, ks) -> dict:
    """The same JPEGs through each candidate decoder: why r[k] uses simplejpeg."""
    import io

    from PIL import Image

    codec = av.CodecContext.create("mjpeg", "r")
    candidates = {
        "simplejpeg (libjpeg-turbo)": lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB"),
        "PyAV mjpeg decoder + rgb24": lambda b: codec.decode(av.Packet(b))[0].to_ndarray(format="rgb24"),
        "Pillow": lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")),
    }
    blobs = {k: reader.jpeg(k) for k in ks}
    out = {}
    for name, fn in candidates.items():
        fn(blobs[ks[0]])
        times, exact = timed_calls(lambda k: fn(blobs[k]), ks, read_index)
        out[name] = {"median_ms": statistics.median(times), "p99_ms": percentile(times, 99), "exact": exact, "n": len(ks)}
    return out


def batch_against_loop(reader, n: int, seed: int, batches: int = 30, size: int = 32) -> dict:
    """``get_frames_at`` of ``size`` random frames against a loop of ``r[k]`` over
    the same frames, alternating, per frame (ms); every frame checked afterwards."""
    rng = random.Random(seed + 1)
    loop, batch, exact = [], [], 0
    reader.get_frames_at(rng.sample(range(n), size))  # warm the pool
    for _ in range(batches):
        ks = rng.sample(range(n), size)
        t = time.perf_counter()
        for k in ks:
            reader[k]
        loop.append((time.perf_counter() - t) * 1000 / size)
        t = time.perf_counter()
        frames = reader.get_frames_at(ks)
        batch.append((time.perf_counter() - t) * 1000 / size)
        exact += sum(read_index(f) == k for f, k in zip(frames.data, ks))
    return {"size": size, "batches": batches, "loop_ms_per_frame": statistics.median(loop), "batch_ms_per_frame": statistics.median(batch), "exact": exact, "n": batches * size}


def torchcodec_reader(src):
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # not installable everywhere (needs torch and FFmpeg libraries)
        return None
    decoder = VideoDecoder(str(src), seek_mode="exact")
    return lambda k: decoder[k].permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--source-frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=30, help="length of the 1080p60 source")
    args = ap.parse_args()
    src = hd_source(args.seconds)
    cache = ProxyCache(common_cache())
    proxy = cache.ensure(src, settings=ProxySettings(hwaccel="none"))

    opens = open_times_ms(lambda: ProxyReader(proxy), 200)
    reader = ProxyReader(proxy)
    n = len(reader)
    ks = random.Random(args.seed).sample(range(n), args.frames)
    # Factories, built only when their turn comes: decord starts decoding
    # threads as soon as it opens a file, which would steal the CPU from the others.
    proxy_methods = {
        "r.jpeg(k)": (lambda: reader.jpeg, ks, lambda b: read_index(simplejpeg.decode_jpeg(b, colorspace="RGB"))),
        "r[k]": (lambda: reader.__getitem__, ks, read_index),
    }
    source_methods = {
        "PyAV exact seek (source)": (lambda: pyav_exact(src), ks[: args.source_frames], read_index),
        "decord (source)": (lambda: decord_reader(src), ks[: args.source_frames], read_index),
        "torchcodec exact (source)": (lambda: torchcodec_reader(src), ks[: args.source_frames], read_index),
    }
    rows, data = [], {}

    def measure(methods: dict) -> None:
        for name, (make, sample, check) in methods.items():
            run_method(name, make, sample, check)

    def run_method(name, make, sample, check) -> None:
        fn = make()
        if fn is None:  # not installed here
            return
        fn(sample[0])  # warm
        times, exact = timed_calls(fn, sample, check, check_apart=name in proxy_methods)
        data[name] = {"n": len(sample), "median_ms": statistics.median(times), "p99_ms": percentile(times, 99), "exact": exact}

    measure(proxy_methods)
    batch = batch_against_loop(reader, n, args.seed)
    t = time.perf_counter()
    for k in range(n):
        reader[k]
    seq_rgb = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for k in range(n):
        reader.jpeg(k)
    seq_jpeg = n / (time.perf_counter() - t)
    decoders = jpeg_decoders(reader, ks[:200])
    measure(source_methods)  # last: decord keeps decoding threads alive once it has opened the file
    base = data["PyAV exact seek (source)"]["median_ms"]
    for name, d in data.items():
        rows.append([name, d["n"], f"{d['median_ms']:.4f}", f"{d['p99_ms']:.4f}", f"{base / d['median_ms']:.0f}x", f"{100 * d['exact'] / d['n']:.0f}%"])
    reader.close()
    summary = {"batch": batch, "jpeg_decoders": decoders, "source": src.name, "frames": n, "methods": data, "open_ms_median": statistics.median(opens), "open_ms_p99": percentile(opens, 99), "sequential_fps": {"rgb": seq_rgb, "jpeg": seq_jpeg}}
    out = save("seek", summary)
    print(table(["method", "frames", "median ms", "p99 ms", "median vs exact source seek", "exact"], rows))
    print()
    ratio = batch["loop_ms_per_frame"] / batch["batch_ms_per_frame"]
    print(
        f"get_frames_at({batch['size']} random frames): {batch['batch_ms_per_frame']:.3f} ms/frame against a loop of r[k] "
        f"{batch['loop_ms_per_frame']:.3f} ms/frame (same frames, same run; median of {batch['batches']}): {ratio:.2f}x, "
        f"{100 * batch['exact'] / batch['n']:.0f}% exact"
    )
    print(f"sequential read: r[k] {seq_rgb:.0f} frames/s, r.jpeg(k) {seq_jpeg:.0f} frames/s; ProxyReader open: median {summary['open_ms_median']:.3f} ms, p99 {summary['open_ms_p99']:.3f} ms")
    print()
    print(table(["JPEG decoder (same 200 proxy frames)", "median ms", "p99 ms", "exact"], [[n, f"{d['median_ms']:.3f}", f"{d['p99_ms']:.3f}", f"{100 * d['exact'] / d['n']:.0f}%"] for n, d in decoders.items()]))
    print(f"results: {out}")


def common_cache():
    from common import MEDIA

    return MEDIA / "cache"


if __name__ == "__main__":
    main()
