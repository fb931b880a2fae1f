"""``scrubproxy serve``: ensure the proxies of a recording, then serve them over HTTP.

Loopback only unless a token is given: the frames of a recording are nobody
else's business. ``--session S`` without sources serves the session as it is
recorded (segments appear and grow as a watcher or follower makes them);
``scrubproxy watch --serve`` runs the same server beside the watcher.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import webbrowser
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import BadInputError
from ..settings import ProxySettings
from .common import DEFAULT_JOBS, CliState, Jobs, Quiet, Session, check_sources, command, ensure_proxies, stderr

if TYPE_CHECKING:
    import uvicorn

    from ..livetimeline import SessionTimeline
    from ..timeline import Timeline

_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,256}")

Host = Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs --token.")]
Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")]
Token = Annotated[
    Optional[str], typer.Option("--token", envvar="SCRUBPROXY_TOKEN", help="Required from every client: 'Authorization: Bearer T', or ?token=T once (sets a cookie).")
]
OpenBrowser = Annotated[bool, typer.Option("--open", help="Open the scrubber page in the default browser.")]


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        raise BadInputError(None, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def check_access(host: str, token: str | None) -> None:
    """Refuse a malformed token, and any address but loopback without one."""
    if token is not None and not _TOKEN.fullmatch(token):
        raise BadInputError(None, "--token must be 8 to 256 characters from A-Z a-z 0-9 . _ ~ -")
    if not is_loopback(host) and token is None:
        raise BadInputError(None, f"--host {host} lets other machines in: give --token T (or SCRUBPROXY_TOKEN) so only people with it can see the frames")


def http_server(timeline: Timeline | SessionTimeline, sock: socket.socket, host: str, token: str | None, open_browser: bool) -> "uvicorn.Server":
    """The server of ``timeline`` on ``sock`` (``.run(sockets=[sock])`` serves),
    once it has said what it serves and where to open it."""
    import uvicorn  # here, not at the top: every other command starts faster without it

    from ..livetimeline import SessionTimeline
    from ..server import create_app

    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/"
    if isinstance(timeline, SessionTimeline):
        now = timeline.current
        what = f"{len(now.segments)} segment(s), {now.frames} frames so far" if now.frames else "nothing yet: waiting for the recording"
        stderr.print(f"serving session {timeline.session} as it is recorded: {what}", highlight=False, soft_wrap=True)
    else:
        stderr.print(f"serving {len(timeline.segments)} segment(s), {timeline.frames} frames, {timeline.duration:.1f} s", highlight=False, soft_wrap=True)
    if token is None:
        stderr.print(f"open {url}  (loopback only; Ctrl+C stops)", highlight=False, soft_wrap=True)
    else:
        stderr.print(f"open {url}?token={token}  (anyone with the token can see these frames; Ctrl+C stops)", highlight=False, soft_wrap=True)
    if open_browser:
        webbrowser.open(url + (f"?token={token}" if token else ""))
    # No proxy-header rewriting: this server is meant to be reached directly (and it costs time per request).
    config = uvicorn.Config(create_app(timeline, token), log_level="warning", access_log=False, proxy_headers=False, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


@command(long_running=True)
def serve(
    cli: CliState,
    settings: ProxySettings,
    sources: Annotated[
        Optional[list[Path]], typer.Argument(metavar="SRC...", help="Source segments, in recording order (default: every segment of --session).", show_default=False)
    ] = None,
    session: Session = None,
    host: Host = "127.0.0.1",
    port: Port = 8765,
    token: Token = None,
    open_browser: OpenBrowser = False,
    jobs: Jobs = DEFAULT_JOBS,
    quiet: Quiet = False,
) -> None:
    """Serve a recording's frames over HTTP, with a scrubber page at /.

    Makes (or reuses) the proxy of each SRC, then serves /api/timeline,
    /frames/K.jpg (and /frames/at.jpg?t=SECONDS), /original/K.jpg|png and the
    page. Without SRC: every segment of --session in recording order, as it is
    recorded: new segments and the growth of one being followed show within a
    second (and it starts, waiting, before the session has any).
    """
    from ..livetimeline import SessionTimeline
    from ..timeline import Timeline

    check_access(host, token)
    if not sources and session is None:
        raise BadInputError(None, "say what to serve: SRC... or --session S")
    if sources:
        sources = check_sources(sources)
    cache = cli.cache()
    sock = bind(host, port)  # before encoding: a taken port fails at once, not after minutes of work
    try:
        timeline: AbstractContextManager[Timeline | SessionTimeline]
        if sources:
            timeline = Timeline.open(ensure_proxies(cli, sources, session, settings, jobs=jobs, show=not quiet))
        else:
            timeline = SessionTimeline(cache, session)  # its segments, whatever settings their proxies have
        with timeline as served:
            http_server(served, sock, host, token, open_browser).run(sockets=[sock])
    finally:
        sock.close()
