"""``scrubproxy serve``: ensure the proxies of a recording, then serve them over HTTP.

Registered on the main app at the end of ``cli.py`` (which wraps it in
``handles_errors``). It imports ``cli`` only when it runs, because ``cli``
imports this module while it loads. Loopback only unless a token is given:
the frames of a recording are nobody else's business.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import webbrowser
from pathlib import Path
from typing import Optional

import typer

from ..cache import ProxyCache
from ..errors import BadInputError
from ..timeline import Timeline
from ..settings import ProxySettings

_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,256}")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_sources(cache: ProxyCache, session: str) -> list[Path]:
    """The sources of a session's valid proxies, in recording order (by file name,
    which recorders number or time-stamp)."""
    sources = [e.source for e in cache.entries(session) if e.state == "valid" and e.source is not None]
    if not sources:
        raise BadInputError(cache.session_dir(session), "session has no valid proxies (make them with: scrubproxy proxy SRC... --session S)")
    return sorted(sources, key=lambda p: (p.name, str(p)))


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


def serve(
    ctx: typer.Context,
    sources: Optional[list[Path]] = typer.Argument(None, metavar="SRC", help="Source segments, in recording order (or use --session)."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id; without SRC, serve every valid proxy of the session."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs --token."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="SCRUBPROXY_TOKEN", help="Required from every client: 'Authorization: Bearer T', or ?token=T once (sets a cookie)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the scrubber page in the default browser."),
    height: int = typer.Option(360, "--height", help="Proxy height in pixels."),
    quality: int = typer.Option(5, "--quality", "-q", help="MJPEG quantiser, 2 (best) to 31 (smallest)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Segments encoded at once."),
) -> None:
    """Serve a recording's frames over HTTP, with a scrubber page at /.

    Makes (or reuses) the proxy of each SRC, then serves /api/timeline,
    /frames/K.jpg (and /frames/at.jpg?t=SECONDS), /original/K.jpg|png and the page.
    """
    if token is not None and not _TOKEN.fullmatch(token):
        raise BadInputError(None, "--token must be 8 to 256 characters from A-Z a-z 0-9 . _ ~ -")
    if not is_loopback(host) and token is None:
        raise BadInputError(None, f"--host {host} lets other machines in: give --token T (or SCRUBPROXY_TOKEN) so only people with it can see the frames")
    import uvicorn  # here, not at the top: every other command starts faster without it

    from .main import ensure_all, stderr
    from ..server import create_app

    cache = ProxyCache(ctx.find_root().params.get("cache_dir"))
    if not sources:
        if session is None:
            raise BadInputError(None, "say what to serve: SRC... or --session S")
        sources = session_sources(cache, session)
    sock = bind(host, port)  # before encoding: a taken port fails at once, not after minutes of work
    try:
        proxies = ensure_all(cache, list(sources), session, ProxySettings(height=height, quality=quality), force=False, jobs=jobs, show=True)
        with Timeline.open(proxies) as timeline:
            shown_host = f"[{host}]" if ":" in host else host
            url = f"http://{shown_host}:{sock.getsockname()[1]}/"
            stderr.print(f"serving {len(proxies)} segment(s), {timeline.frames} frames, {timeline.duration:.1f} s", highlight=False, soft_wrap=True)
            if token is None:
                stderr.print(f"open {url}  (loopback only; Ctrl+C stops)", highlight=False, soft_wrap=True)
            else:
                stderr.print(f"open {url}?token={token}  (anyone with the token can see these frames; Ctrl+C stops)", highlight=False, soft_wrap=True)
            if open_browser:
                webbrowser.open(url + (f"?token={token}" if token else ""))
            # No proxy-header rewriting: this server is meant to be reached directly (and it costs time per request).
            config = uvicorn.Config(create_app(timeline, token), log_level="warning", access_log=False, proxy_headers=False, timeout_graceful_shutdown=2)
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
