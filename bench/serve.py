"""HTTP frame serving under load: ``scrubproxy serve`` against a server that decodes from the source, same run.

8 concurrent connections (``wrk``, a C load tool, with ``serve_random.lua``:
uniformly random frame numbers, the same sequence for both servers) fetch
``/frames/<k>.jpg`` for a fixed time from

  (a) ``scrubproxy serve`` (the real command: JPEG slices of the proxy), and
  (b) an on-demand server: the same route, the same frames, decoded from the
      source with an exact PyAV seek (keyframe before, decode forward to the
      frame's pts: ``scrubproxy.sourceframes.decode_exact``), scaled to the proxy's
      size and JPEG-encoded; what a server without proxies has to do.

Source: 1080p60 H.264, GOP 250, B-frames, made once with samples.make_recording
(cached in bench/media/). Before the load, a sample of frames from each server
is checked by the index painted into its pixels. Reports frames/s, latency
median/p99, peak memory of each server and the ratio; JSON to bench/results/.

    python bench/serve.py [--seconds 10] [--source-seconds 12] [--nice] [--screenshot docs/scrubber.png]

``--nice`` runs both servers and wrk at nice -10 (root only): on a small
machine shared with other work, this separates the server's own latency from
the waits for a CPU that the other work causes.
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import BENCH, MEDIA, RESULTS, cached_recording

LUA = BENCH / "serve_random.lua"
CONNECTIONS = 8


def source(seconds: int) -> Path:
    """The 1080p60 GOP-250 H.264 source (made once, slow)."""
    return cached_recording(
        f"serve-1080p60-{seconds}s-gop250.mp4",
        frames=60 * seconds, width=1920, height=1080, rate=fractions.Fraction(60), gop=250, bframes=3, colorspace="ITU709",
    )


# -- (b) the on-demand server, run in a child process by this same file -------------------------------------


def on_demand_app(src: Path, proxy_path: Path):
    """Starlette app: ``/frames/{k}.jpg`` decoded exactly from ``src`` on every request."""
    import simplejpeg
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response
    from starlette.routing import Route

    from scrubproxy.sourceframes import decode_exact
    from scrubproxy.reader import ProxyReader

    with ProxyReader(proxy_path) as proxy:  # the frame pts and output size only; no pixels from it
        pts = [proxy.pts_of(k) for k in range(len(proxy))]
        width, height = proxy.metadata.width, proxy.metadata.height

    def render(k: int) -> bytes:
        frame = decode_exact(src, pts[k])
        rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
        return simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB")

    async def frame(request):
        k = int(request.path_params["k"])
        if not 0 <= k < len(pts):
            return Response(status_code=404)
        return Response(await run_in_threadpool(render, k), media_type="image/jpeg")

    return Starlette(routes=[Route("/frames/{k:int}.jpg", frame)])


def run_on_demand_server(src: Path, proxy_path: Path) -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"open http://127.0.0.1:{sock.getsockname()[1]}/", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(on_demand_app(src, proxy_path), log_level="warning", access_log=False)).run(sockets=[sock])


# -- measuring ----------------------------------------------------------------------------------------------


class Server:
    """A server child process; its URL from its 'open http://...' line on stderr."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, **env})
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                m = re.search(r"open (http://\S+?/)", line)
                if m and not self.url:
                    self.url = m[1]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(900) or not self.url:
            self.stop()
            raise RuntimeError(f"{cmd} did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_frames(url: str, frames: int, sample: int = 12) -> int:
    """Fetch ``sample`` random frames; return how many show their own index (must be all)."""
    import io

    import numpy as np
    from PIL import Image

    from scrubproxy.samples import read_index

    good = 0
    for k in random.Random(7).sample(range(frames), sample):
        with urllib.request.urlopen(f"{url}frames/{k}.jpg", timeout=120) as res:
            good += read_index(np.asarray(Image.open(io.BytesIO(res.read())).convert("RGB"))) == k
    return good


def load(url: str, frames: int, seconds: float, prefix: list[str]) -> dict:
    """``wrk`` with 8 connections for ``seconds``; its JSON summary plus the CPU wrk itself used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [*prefix, "wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(LUA), url],
        capture_output=True,
        text=True,
        env={**os.environ, "FRAMES": str(frames), "SEED": "1"},
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    secs = result["duration_us"] / 1e6
    result["frames_per_s"] = result["requests"] / secs
    result["mb_per_s"] = result["bytes"] / secs / 1e6
    result["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def screenshot(out: Path, env: dict[str, str]) -> None:
    """The scrubber page in headless Chromium over three 720p segments (for the README)."""
    from playwright.sync_api import sync_playwright

    from scrubproxy.samples import RecordingSpec, make_recording

    segments = [MEDIA / f"screenshot-{i:03d}.mp4" for i in range(3)]
    for path in segments:
        if not path.exists():
            make_recording(RecordingSpec(path=path, frames=90, width=1280, height=720, gop=30, bframes=2, colorspace="ITU709"))
    server = Server([sys.executable, "-m", "scrubproxy", "serve", *map(str, segments), "--port", "0"], env)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(f"{server.url}#f=137")
            page.wait_for_function("document.body.dataset.state === 'idle'")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="load time per server")
    parser.add_argument("--source-seconds", type=int, default=12, help="length of the 1080p60 source (>= 10)")
    parser.add_argument("--nice", action="store_true", help="run the servers and wrk at nice -10 (root)")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here")
    parser.add_argument("--on-demand-server", nargs=2, metavar=("SRC", "PROXY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.on_demand_server:
        run_on_demand_server(Path(args.on_demand_server[0]), Path(args.on_demand_server[1]))
        return

    src = source(args.source_seconds)
    cache_dir = Path(tempfile.mkdtemp(prefix="scrubproxy-bench-serve-"))
    try:
        measure(args, src, cache_dir)
    finally:
        shutil.rmtree(cache_dir)  # the folder made just above, nothing else


def measure(args: argparse.Namespace, src: Path, cache_dir: Path) -> None:
    env = {"SCRUBPROXY_CACHE_DIR": str(cache_dir)}
    started = time.perf_counter()
    proxy_path = Path(subprocess.run([sys.executable, "-m", "scrubproxy", "proxy", str(src), "--quiet"], capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout.strip())
    encode_s = time.perf_counter() - started
    from scrubproxy.reader import ProxyReader

    with ProxyReader(proxy_path) as proxy:
        frames, size = len(proxy), (proxy.metadata.width, proxy.metadata.height)
    results: dict = {"source": src.name, "frames": frames, "proxy_size": size, "proxy_encode_s": encode_s, "connections": CONNECTIONS, "seconds": args.seconds}

    results["load_average_before"] = os.getloadavg()
    prefix = ["nice", "-n", "-10"] if args.nice else []
    results["nice"] = args.nice
    servers = {
        "proxy": [*prefix, sys.executable, "-m", "scrubproxy", "serve", str(src), "--port", "0"],
        "on_demand": [*prefix, sys.executable, __file__, "--on-demand-server", str(src), str(proxy_path)],
    }
    for name, cmd in servers.items():
        server = Server(cmd, env)
        try:
            results[f"{name}_exact_sample"] = f"{check_frames(server.url, frames)}/12"
            if name == "proxy":
                load(server.url, frames, 2, prefix)  # warm-up: page cache, first connections
            print(f"loading {name} for {args.seconds:g} s", file=sys.stderr)
            cpu = server.cpu_seconds()
            results[name] = load(server.url, frames, args.seconds, prefix)
            results[name]["server_cpu_s"] = server.cpu_seconds() - cpu
            results[name]["server_cpu_ms_per_frame"] = 1000 * results[name]["server_cpu_s"] / max(1, results[name]["requests"])
            results[name]["peak_rss_mb"] = server.peak_rss_mb()
        finally:
            server.stop()

    results["load_average_after"] = os.getloadavg()  # other work on the machine shows in the latencies
    if args.screenshot:
        screenshot(args.screenshot, env)
    p, o = results["proxy"], results["on_demand"]
    results["throughput_ratio"] = p["frames_per_s"] / o["frames_per_s"] if o["frames_per_s"] else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1))

    def row(label: str, r: dict, exact: str) -> str:
        errors = sum(r["errors"].values())
        lat = r["latency_us"]
        fps = f"{r['frames_per_s']:,.0f}" if r["frames_per_s"] >= 10 else f"{r['frames_per_s']:.2f}"
        return (
            f"| {label} | {fps} | {lat['p50'] / 1000:.2f} | {lat['p99'] / 1000:.2f} | {r['server_cpu_ms_per_frame']:.3f} | "
            f"{r['mb_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {errors} | {exact} |"
        )

    load_avg = results["load_average_before"][0]
    print(f"\n{frames} frames of {src.name} ({size[0]}x{size[1]} proxy), {CONNECTIONS} connections, {args.seconds:g} s each (wrk), {os.cpu_count()} CPUs, load average {load_avg:.1f} before{', at nice -10' if args.nice else ''}\n")
    print("| server | frames/s | median ms | p99 ms | server CPU ms/frame | MB/s | peak RSS MB | errors | exact (sample) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("scrubproxy serve (proxy)", p, results["proxy_exact_sample"]))
    print(row("on demand from the source (exact PyAV seek)", o, results["on_demand_exact_sample"]))
    ratio = results["throughput_ratio"]
    print(f"\nthroughput ratio proxy / on demand: {ratio:,.0f}x" if ratio else "\non-demand server served nothing")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
