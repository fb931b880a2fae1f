"""The ``scrubproxy`` command: parse, call the library, render.

Errors print one line ``error: <file>: <reason>`` on stderr and exit with the
error's code (2 bad input, 3 unreadable source, 4 encode failure); ``--debug``
shows the traceback. Paths go to stdout, everything for people to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .._version import __version__
from ..cache import ProxyCache
from ..errors import ScrubProxyError
from ..probe import probe
from ..settings import ProxySettings

app = typer.Typer(
    help="Make all-intra proxies of recording segments for instant, frame-exact scrubbing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)
log = logging.getLogger("scrubproxy")

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    cache_dir: Optional[Path] = None
    debug: bool = False


state = _State()


def _cache() -> ProxyCache:
    return ProxyCache(state.cache_dir)


def handles_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ScrubProxyError as exc:
            if state.debug:
                raise
            where = f"{exc.path}: " if exc.path is not None else ""
            stderr.print(f"error: {where}{exc.reason}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scrubproxy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar="SCRUBPROXY_CACHE_DIR", help="Cache root (default: the platform's user cache folder)."),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """scrubproxy: all-intra proxies for instant, frame-exact scrubbing."""
    state.cache_dir = cache_dir
    state.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(height: int, quality: int, hwaccel: str, stream: Optional[int] = None) -> ProxySettings:
    return ProxySettings(height=height, quality=quality, hwaccel=hwaccel, stream=stream)


def progress_bar(enabled: bool) -> Progress:
    """A rich progress bar on stderr; invisible when not a terminal or ``--quiet``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:>6.0f} fps"),
        TimeRemainingColumn(),
        console=stderr,
        disable=not enabled or not stderr.is_terminal,
        transient=False,
    )


def ensure_all(cache: ProxyCache, sources: list[Path], session: Optional[str], settings: ProxySettings, force: bool, jobs: int, show: bool) -> list[Path]:
    """Ensure proxies for ``sources`` (``jobs`` at a time) with a progress bar; returns their paths in order."""
    results: dict[int, Path] = {}
    interrupted = threading.Event()
    with progress_bar(show) as bar:
        def run(i: int, src: Path) -> Path:
            task = bar.add_task(src.name, total=None, fps=0.0)

            def update(done: int, total: Optional[int], fps: float) -> None:
                if interrupted.is_set():  # Ctrl-C reaches only the main thread: stop this encode too
                    raise KeyboardInterrupt
                bar.update(task, completed=done, total=total, fps=fps)

            path = cache.ensure(src, session, settings, progress=update, force=force)
            bar.update(task, completed=bar.tasks[task].total or 1, total=bar.tasks[task].total or 1)
            return path

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(run, i, src): i for i, src in enumerate(sources)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
            except KeyboardInterrupt:
                interrupted.set()
                for fut in futures:
                    fut.cancel()
                raise
    return [results[i] for i in range(len(sources))]


@app.command()
@handles_errors
def proxy(
    sources: list[Path] = typer.Argument(..., help="Source segments."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (folder in the cache)."),
    height: int = typer.Option(360, "--height", help="Proxy height in pixels (16-4320; never above the source's)."),
    quality: int = typer.Option(5, "--quality", "-q", help="MJPEG quantiser, 2 (best) to 31 (smallest)."),
    hwaccel: str = typer.Option("auto", "--hwaccel", help="auto, none, or a device type (cuda, vaapi, qsv, videotoolbox, d3d11va)."),
    stream: Optional[int] = typer.Option(None, "--stream", help="Which video stream (0 = first); default: the one players show."),
    force: bool = typer.Option(False, "--force", help="Rebuild even valid proxies."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Segments encoded at once."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Make (or reuse) the proxy of each SRC; print each proxy's path."""
    settings = _settings(height, quality, hwaccel, stream)
    for path in ensure_all(_cache(), sources, session, settings, force, jobs, not quiet):
        typer.echo(str(path))


@app.command()
@handles_errors
def path(
    source: Path = typer.Argument(..., help="Source segment."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id."),
) -> None:
    """Print where the proxy of SRC lives (or will live). Encodes nothing."""
    typer.echo(str(_cache().path_for(source, session)))


def _age(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    secs = max(0, time.time() - ts)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs / n:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


@app.command("ls")
@handles_errors
def list_entries(
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Only this session."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List the proxies in the cache: session, source, size, frames, state, last use."""
    entries = _cache().entries(session)
    if as_json:
        rows = [
            {
                "session": e.session,
                "key": e.key,
                "source": str(e.source) if e.source else None,
                "proxy": str(e.proxy_path) if e.proxy_path else None,
                "size": e.size,
                "frames": e.frames,
                "state": e.state,
                "partial": e.partial,
                "last_used": e.last_used,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("session", "source", "size", "frames", "state", "last use")
    for e in entries:
        state_text = e.state + (" (partial)" if e.partial else "")
        table.add_row(e.session, str(e.source or e.key), f"{e.size / 1e6:.1f} MB", str(e.frames or "-"), state_text, _age(e.last_used))
    Console().print(table)


@app.command()
@handles_errors
def clean(
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Clean this session."),
    all_sessions: bool = typer.Option(False, "--all", help="Clean every session."),
    stale: bool = typer.Option(False, "--stale", help="Only proxies whose source is gone or changed (and leftovers)."),
) -> None:
    """Delete proxies: one session's, every session's (--all), or only stale ones."""
    if session is None and not all_sessions and not stale:
        stderr.print("error: say which: --session S, --all, or --stale", highlight=False)
        raise typer.Exit(2)
    if session is not None and all_sessions:
        stderr.print("error: --session and --all exclude each other", highlight=False)
        raise typer.Exit(2)
    removed = _cache().cleanup(session, stale_only=stale)
    stderr.print(f"removed {removed} prox{'y' if removed == 1 else 'ies'}", highlight=False)


@app.command()
@handles_errors
def info(
    source: Path = typer.Argument(..., help="Source segment."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (for the proxy state)."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Describe SRC (streams, rate, variable rate, rotation, colour) and its proxy's state."""
    src = probe(source)
    cache = _cache()
    proxy_path = cache.lookup(source, session)
    v = src.video
    data = {
        "source": str(src.path),
        "size": src.size,
        "format": src.format_name,
        "duration": src.duration,
        "streams": [{"index": s.index, "type": s.type, "codec": s.codec, "detail": s.detail} for s in src.streams],
        "video": {
            "stream": v.index,
            "codec": v.codec,
            "width": v.width,
            "height": v.height,
            "display_width": v.display_width,
            "display_height": v.display_height,
            "sample_aspect": str(v.sample_aspect),
            "rotation": v.rotation,
            "pix_fmt": v.pix_fmt,
            "bit_depth": v.bit_depth,
            "matrix": v.matrix,
            "range": v.color_range,
            "average_rate": str(v.average_rate) if v.average_rate else None,
            "frames": v.frame_count,
            "variable_rate": v.variable_rate,
            "time_base": str(v.time_base),
            "start_pts": v.start_pts,
        },
        "proxy": {"path": str(proxy_path) if proxy_path else str(cache.path_for(source, session)), "state": "valid" if proxy_path else "missing or stale"},
    }
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    out = Console()
    out.print(f"[bold]{src.path}[/] ({src.format_name}, {src.size / 1e6:.1f} MB, {src.duration or 0:.2f} s)")
    for s in src.streams:
        out.print(f"  stream {s.index}: {s.type} {s.codec} {s.detail}", highlight=False)
    rate = f"{float(v.average_rate):.3f} fps" if v.average_rate else "unknown rate"
    out.print(
        f"  video: stream {v.index}, {v.width}x{v.height} -> shown {v.display_width}x{v.display_height}, "
        f"{rate}, {'variable' if v.variable_rate else 'constant'} rate, {v.frame_count} frames, rotation {v.rotation}, "
        f"{v.pix_fmt} ({v.bit_depth}-bit), matrix {v.matrix}, {v.color_range} range",
        highlight=False,
    )
    out.print(f"  proxy: {data['proxy']['path']} ({data['proxy']['state']})", highlight=False)


@app.command()
@handles_errors
def demo(
    folder: Optional[Path] = typer.Option(None, "--folder", help="Where to write the example recording (default: a new temporary folder)."),
    seconds: float = typer.Option(4.0, "--seconds", min=0.5, max=60, help="Length of the example recording."),
) -> None:
    """Make a short example recording with PyAV, build its proxy, and say what happened."""
    from ..samples import RecordingSpec, make_recording, read_index

    target = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="scrubproxy-demo-"))
    frames = int(seconds * 30)
    stderr.print(f"1. writing an example recording ({frames} frames, 1280x720 H.264, 30 fps, B-frames)", highlight=False)
    source = make_recording(RecordingSpec(path=target / "demo-recording.mp4", frames=frames, width=1280, height=720, bframes=2, gop=60, colorspace="ITU709"))
    stderr.print(f"   {source}", highlight=False)
    stderr.print("2. building its proxy (all-intra MJPEG, 360 px high)", highlight=False)
    cache = _cache()
    started = time.monotonic()
    [proxy_path] = ensure_all(cache, [source], "demo", ProxySettings(), force=True, jobs=1, show=True)
    took = time.monotonic() - started
    started = time.monotonic()
    cache.ensure(source, "demo")
    hit_ms = (time.monotonic() - started) * 1000
    entry = next(e for e in cache.entries("demo") if e.proxy_path == proxy_path)
    stderr.print(f"   {proxy_path}", highlight=False)
    stderr.print(f"   {entry.frames} frames in {took:.2f} s, {proxy_path.stat().st_size / 1e6:.1f} MB; asking again took {hit_ms:.2f} ms (cache hit)", highlight=False)
    from ..reader import ProxyReader

    with ProxyReader(proxy_path) as reader:
        k = len(reader) // 2
        shown = read_index(reader[k])
    stderr.print(f"3. proxy frame {k} shows the index painted into source frame {shown}: {'exact' if shown == k else 'MISMATCH'}", highlight=False)
    stderr.print(f"   try: scrubproxy info {source}", highlight=False)
    typer.echo(str(proxy_path))
    if shown != k:
        raise typer.Exit(1)


@app.command()
@handles_errors
def verify(
    source: Path = typer.Argument(..., help="Source segment."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id."),
    all_frames: bool = typer.Option(False, "--all", help="Check every frame (slow on long-GOP sources)."),
    samples: int = typer.Option(50, "--samples", "-n", min=1, help="Random frames to check (first and last included)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random sample."),
) -> None:
    """Check that proxy frame k is source frame k (count, pts, pixels); exit 1 on any mismatch."""
    from ..verify import verify_proxy

    cache = _cache()
    proxy_path = cache.ensure(source, session)
    with progress_bar(True) as bar:
        task = bar.add_task("verify", total=None, fps=0.0)
        report = verify_proxy(source, proxy_path, None if all_frames else samples, seed, progress=lambda d, t: bar.update(task, completed=d, total=t))
    for m in report.mismatches:
        where = "frame count" if m.frame < 0 else f"frame {m.frame}"
        typer.echo(f"mismatch: {where}: {m.reason}")
    verdict = "ok" if report.ok else f"{len(report.mismatches)} mismatch(es)"
    stderr.print(f"{report.source}: {len(report.checked)} of {report.frames} frames checked, {verdict}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handles_errors
def frame(
    source: Path = typer.Argument(..., help="Source segment."),
    index: Optional[int] = typer.Argument(None, help="Frame number (0 = first; negative counts from the end)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write it: .jpg (the proxy's JPEG as is) or .png."),
    at_time: Optional[float] = typer.Option(None, "--time", "-t", help="Instead of K: the frame shown at this source time (seconds)."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id."),
) -> None:
    """Write one proxy frame (frame K, or the one shown at --time) to a file; print its path."""
    from ..errors import BadInputError

    if (index is None) == (at_time is None):
        raise BadInputError(source, "give a frame number K or --time T (one of them)")
    with _cache().open(source, session) as reader:
        k = reader.index_at(at_time) if at_time is not None else index
        try:
            data = reader.jpeg(k)
        except IndexError:
            raise BadInputError(source, f"frame {k} out of range (0 to {len(reader) - 1})") from None
        k = k % len(reader)
        out = output or Path(f"{Path(source).stem}-{k:06d}.jpg")
        suffix = out.suffix.lower()
        if suffix in (".jpg", ".jpeg"):
            out.write_bytes(data)
        elif suffix == ".png":
            import av

            av.VideoFrame.from_ndarray(reader[k], format="rgb24").save(str(out))
        else:
            raise BadInputError(out, "output must end in .jpg, .jpeg or .png")
        stderr.print(f"frame {k} at {reader.time_of(k):.6f} s", highlight=False)
    typer.echo(str(out))


# scrubproxy serve: HTTP frame server and scrubber page
from .serve import serve  # noqa: E402

app.command()(handles_errors(serve))

# scrubproxy play: mpv on the proxies (cli_play.py)
from .play import play as _play  # noqa: E402

app.command("play")(handles_errors(_play))

from .watch import watch  # noqa: E402  (registered last: keeps merges of new commands trivial)

app.command()(watch)


#: click's base class of usage errors, reached through typer's public BadParameter.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def run() -> None:
    """Console-script entry point: usage errors too end in one ``error:`` line (exit 2)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="scrubproxy", standalone_mode=False)
    except _USAGE_ERROR as exc:
        message = exc.format_message()
        if message:  # empty when the help was asked for by giving no arguments
            stderr.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        stderr.print("interrupted", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

