"""``scrubproxy demo``: make an example recording, proxy it, show that its frames are exact."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..settings import ProxySettings
from .common import CliState, command, ensure_proxies, stderr


@command(long_running=True)
def demo(
    cli: CliState,
    folder: Annotated[Optional[Path], typer.Option("--folder", metavar="FOLDER", help="Where to write the example recording (default: a new temporary folder).")] = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.5, max=60, help="Length of the example recording.")] = 4.0,
) -> None:
    """Make a short example recording with PyAV, build its proxy (session 'demo'), and say what happened."""
    from ..reader import ProxyReader
    from ..samples import RecordingSpec, make_recording, read_index

    target = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="scrubproxy-demo-"))
    frames = int(seconds * 30)
    stderr.print(f"1. writing an example recording ({frames} frames, 1280x720 H.264, 30 fps, B-frames)", highlight=False)
    source = make_recording(RecordingSpec(path=target / "demo-recording.mp4", frames=frames, width=1280, height=720, bframes=2, gop=60, colorspace="ITU709"))
    stderr.print(f"   {source}", highlight=False)
    stderr.print("2. building its proxy (all-intra MJPEG, 360 px high)", highlight=False)
    cache = cli.cache()
    started = time.monotonic()
    [proxy_path] = ensure_proxies(cli, [source], "demo", ProxySettings(), force=True)
    took = time.monotonic() - started
    started = time.monotonic()
    cache.ensure(source, "demo")
    hit_ms = (time.monotonic() - started) * 1000
    entry = next(e for e in cache.entries("demo") if e.proxy_path == proxy_path)
    stderr.print(f"   {proxy_path}", highlight=False)
    stderr.print(f"   {entry.frames} frames in {took:.2f} s, {proxy_path.stat().st_size / 1e6:.1f} MB; asking again took {hit_ms:.2f} ms (cache hit)", highlight=False)
    with ProxyReader(proxy_path) as reader:
        k = len(reader) // 2
        shown = read_index(reader[k])
    stderr.print(f"3. proxy frame {k} shows the index painted into source frame {shown}: {'exact' if shown == k else 'MISMATCH'}", highlight=False)
    stderr.print(f"   try: scrubproxy info {source}", highlight=False)
    typer.echo(str(proxy_path))
    if shown != k:
        raise typer.Exit(1)
