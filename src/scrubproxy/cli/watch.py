"""``scrubproxy watch``: proxies for each recording segment as soon as it completes.

A thin layer over :class:`scrubproxy.watch.SegmentWatcher`: parse, connect
to the Dask cluster once for the whole run when ``--scheduler`` says so,
install SIGINT/SIGTERM handlers that stop it cleanly, render a live status
line on a terminal (plain timestamped log lines otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..settings import ProxySettings
from ..watch import VIDEO_PATTERNS, SegmentWatcher, WatchStatus
from ..watch.workers import OnCluster, Runner
from .common import DEFAULT_JOBS, CliState, ClusterChoice, Jobs, Session, command, stderr
from .serve import Host, OpenBrowser, Port, Token, bind, check_access, http_server

if TYPE_CHECKING:
    from rich.text import Text


def _status_line(s: WatchStatus) -> Text:
    from rich.text import Text

    parts = [f"queue {s.queued}", f"being written {s.writing}"]
    parts += [f"following {name} {frames} frames" for name, frames in s.following]
    parts += [f"recording {name}" for name in s.recording]
    for name, done, total, fps in s.encoding:
        parts.append(f"encoding {name} {done}/{total or '?'} at {fps:.0f} fps")
    if not s.encoding:
        parts.append("idle")
    parts.append(f"done {s.done}")
    if s.failed:
        parts.append(f"failed {s.failed}")
    if s.last_lag is not None:
        parts.append(f"last lag {s.last_lag:.1f} s")
    return Text(" · ".join(parts))


def _log_handler(live: bool) -> logging.Handler:
    from rich.logging import RichHandler

    if live:
        return RichHandler(console=stderr, show_path=False, markup=False, rich_tracebacks=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


@command()
def watch(
    cli: CliState,
    settings: ProxySettings,
    cluster: Optional[ClusterChoice],
    folders: Annotated[list[Path], typer.Argument(metavar="FOLDER...", help="Folders the recorder writes segments into (not recursive).", show_default=False)],
    session: Session = None,
    jobs: Jobs = DEFAULT_JOBS,
    pattern: Annotated[Optional[list[str]], typer.Option("--pattern", help=f"Segment file pattern, repeatable (default: {' '.join(VIDEO_PATTERNS)}).")] = None,
    max_size: Annotated[
        Optional[str], typer.Option("--max-size", help="Cache budget (e.g. 20G, 500M): least recently used proxies are removed beyond it.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Make proxies of the segments there now, then exit.")] = False,
    settle: Annotated[
        float, typer.Option("--settle", min=0.1, help="Seconds a segment must stay unchanged to count as complete where file events are not available.")
    ] = 5.0,
    poll: Annotated[bool, typer.Option("--poll", help="Do not use file events (network folders): judge completeness by --settle only.")] = False,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Do not follow segments while they are recorded: proxy each one once complete.")
    ] = False,
    serve: Annotated[bool, typer.Option("--serve", help="Also serve the session's frames and the scrubber page, as scrubproxy serve --session does.")] = False,
    host: Host = "127.0.0.1",
    port: Port = 8765,
    token: Token = None,
    open_browser: OpenBrowser = False,
) -> None:
    """Watch FOLDER... and make a proxy of each segment once its writer has finished it, newest first.

    Segments are complete when their writer closed them (file events) or, without
    events, when unchanged for --settle seconds. Encoders run at low CPU priority.
    SIGINT/SIGTERM stop within seconds and leave nothing partial. Exit status with
    --once: 0, or the highest error code among skipped segments.

    A segment being written whose container can be read while written (Matroska,
    MPEG-TS, fragmented MP4) is followed as it grows: its live proxy can be
    scrubbed at once and is complete when the recording is (--no-follow: not
    followed). A plain MP4/MOV is shown as recording and proxied once complete.

    With --scheduler, complete segments go to a Dask cluster's workers as soon as
    they are complete, the newest with the highest priority (--jobs does not apply).

    With --serve, the same process serves the session over HTTP while it is
    recorded (--host, --port, --token and --open as for scrubproxy serve);
    Ctrl-C or SIGTERM stop both.
    """
    from ..watch.budget import parse_size

    if serve:
        check_access(host, token)
    with contextlib.ExitStack() as stack:
        if serve:
            stack.enter_context(_serving(cli, session, host, port, token, open_browser))
        runner: Optional[Runner] = None
        where = f"jobs {jobs}"
        if cluster is not None:
            runner = OnCluster(stack.enter_context(cluster.connect()), cluster.path_map)
            where = f"on the Dask cluster at {cluster.scheduler}"
        watcher = SegmentWatcher(
            folders,
            cli.cache(),
            session=session,
            settings=settings,
            jobs=jobs,
            patterns=tuple(pattern) if pattern else VIDEO_PATTERNS,
            max_bytes=parse_size(max_size) if max_size else None,
            settle=settle,
            poll=poll,
            runner=runner,
            follow=not no_follow,
        )
        _serve(watcher, once, cli.debug, where)


@contextlib.contextmanager
def _serving(cli: CliState, session: Optional[str], host: str, port: int, token: Optional[str], open_browser: bool):
    """The session's HTTP server in a thread for as long as the block runs (the watcher's)."""
    from ..livetimeline import SessionTimeline

    sock = bind(host, port)
    try:
        with SessionTimeline(cli.cache(), session) as timeline:
            server = http_server(timeline, sock, host, token, open_browser)
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="scrubproxy-serve", daemon=True)
            thread.start()
            try:
                yield
            finally:
                server.should_exit = True
                thread.join(10)
    finally:
        sock.close()


def _serve(watcher: SegmentWatcher, once: bool, debug: bool, where: str) -> None:
    """Run ``watcher`` until a signal (or, ``once``, until done), logging as it goes."""
    from rich.live import Live

    live = stderr.is_terminal
    logger = logging.getLogger("scrubproxy")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.addHandler(_log_handler(live))
    logger.propagate = False
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: watcher.stop())
    logger.info("watching %s (%s%s)", ", ".join(map(str, watcher.folders)), where, ", once" if once else "")
    if live:
        with Live(get_renderable=lambda: _status_line(watcher.status()), console=stderr, refresh_per_second=4, transient=True):
            watcher.run(once=once)
    else:
        watcher.run(once=once)
    logger.info("done" if once else "stopped")
    if once and watcher.exit_code:
        raise typer.Exit(watcher.exit_code)
