"""The HTTP frame server: a timeline of proxies as JSON, JPEG frames and a scrubber page.

Routes (no URL ever carries a file path; segments are addressed by their
place on the timeline)::

    GET /                      the scrubber page (package data, nothing from the internet)
    GET /app.js, /app.css      its script and style
    GET /api/timeline          segments in recording order: frames, times, global frame ranges
    GET /frames/{k}.jpg        global frame k from the proxy (a slice of a memory map)
    GET /frames/at.jpg?t=S     the frame on screen at timeline time S seconds
    GET /original/{k}.jpg|png  frame k decoded exactly from the source, full resolution

``?v=VERSION`` on a frame URL (the page adds the version from /api/timeline)
gets a 409 once the timeline is another one, instead of a frame of it.
Frame responses carry ``X-Frame``, ``X-Segment``, ``X-Source-Frame``,
``X-Source-Time`` and ``X-Timeline-Time`` headers, an ETag from the proxy's
build id (a rebuilt proxy changes it) and a year-long private cache lifetime.
Every error is JSON ``{"error": ...}``: 400 for a malformed query, 404 for
anything that names no frame, 401 without the token.
"""

from __future__ import annotations

import hmac
import logging
import re
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ScrubProxyError
from .original import decode_exact, encode_still, upright_rgb
from .segments import Segment, Timeline

log = logging.getLogger(__name__)

TOKEN_COOKIE = "scrubproxy_token"
CACHE_FOREVER = "private, max-age=31536000, immutable"
_FRAME_NAME = re.compile(r"([0-9]{1,15})\.(jpg|png)")
_PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
#: Exact decodes at once: each holds a full-resolution decoder and a GOP of work.
ORIGINAL_DECODES = 2


class HTTPError(Exception):
    """An answer to a request that names nothing servable (turned into JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_frame_name(name: str, formats: tuple[str, ...]) -> tuple[int, str]:
    """``"123.jpg"`` -> ``(123, "jpg")``; anything else (signs, paths, other
    suffixes, absurd lengths) is a 404: it names no frame."""
    m = _FRAME_NAME.fullmatch(name)
    if m is None or m[2] not in formats:
        raise HTTPError(404, f"no such frame: {name[:64]!r} (expected N.{'|'.join(formats)})")
    return int(m[1]), m[2]


def parse_time(request: Request) -> float:
    """The ``t`` query parameter as finite, non-negative seconds (400 otherwise)."""
    raw = request.query_params.get("t")
    if raw is None:
        raise HTTPError(400, "missing t (seconds on the timeline)")
    try:
        if len(raw) > 64:
            raise ValueError
        t = float(raw)
    except ValueError:
        raise HTTPError(400, f"t must be a number of seconds, got {raw[:32]!r}") from None
    if not (t >= 0 and t != float("inf")):
        raise HTTPError(400, f"t must be a finite number of seconds >= 0, got {raw[:32]!r}")
    return t


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags


def _page_file(name: str) -> bytes:
    return resources.files("scrubproxy").joinpath("web", name).read_bytes()


def create_app(timeline: Timeline, token: str | None = None) -> ASGIApp:
    """The ASGI app serving ``timeline``; with ``token``, every request must carry it.

    The app never closes ``timeline``: its owner does, after the server stops.
    """
    page = {name: _page_file(name) for name in _PAGE_FILES}
    original_slots = anyio.CapacityLimiter(ORIGINAL_DECODES)

    def locate(k: int) -> tuple[Segment, int]:
        try:
            return timeline.locate(k)
        except IndexError as exc:
            raise HTTPError(404, f"no such frame: {exc}") from None

    def check_version(request: Request) -> None:
        """``?v=`` (the page sends the timeline version it drew) must still be this timeline's."""
        v = request.query_params.get("v")
        if v is not None and v != timeline.version:
            raise HTTPError(409, "the timeline changed since this page loaded it: reload the page")

    def frame_headers(k: int, fmt: str) -> tuple[str, dict[str, str]]:
        seg, local = locate(k)
        etag = f'"{seg.build_id[:16]}-{local}-{fmt}"'
        return etag, {
            "ETag": etag,
            "Cache-Control": CACHE_FOREVER,
            "X-Frame": str(k),
            "X-Segment": str(seg.index),
            "X-Source-Frame": str(local),
            "X-Source-Time": f"{seg.reader.time_of(local):.6f}",
            "X-Timeline-Time": f"{seg.start_time + seg.reader.time_of(local):.6f}",
        }

    async def proxy_frame(request: Request) -> Response:
        check_version(request)
        name = request.path_params["name"]
        if name == "at.jpg":
            try:
                k = timeline.frame_at(parse_time(request))
            except ValueError as exc:
                raise HTTPError(404, f"no such frame: {exc}") from None
        else:
            k, _ = parse_frame_name(name, ("jpg",))
        etag, headers = frame_headers(k, "proxy")
        if name == "at.jpg":  # which frame a time names may change with the timeline: revalidate
            headers["Cache-Control"] = "no-cache"
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        seg, local = locate(k)
        return Response(seg.reader.jpeg(local), media_type="image/jpeg", headers=headers)

    async def original_frame(request: Request) -> Response:
        check_version(request)
        k, fmt = parse_frame_name(request.path_params["name"], ("jpg", "png"))
        etag, headers = frame_headers(k, fmt)
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        seg, local = locate(k)
        meta = seg.reader.metadata
        if meta.source_path is None:
            raise HTTPError(404, f"segment {seg.index} does not record its source")

        def work() -> bytes:
            frame = decode_exact(meta.source_path, seg.reader.pts_of(local), meta.settings.get("stream"))
            return encode_still(upright_rgb(frame), fmt)

        try:
            body = await run_in_threadpool_limited(work, original_slots)
        except (ScrubProxyError, OSError) as exc:
            log.warning("original frame %d: %s", k, exc)
            return _error(502, f"the source of segment {seg.index} could not give frame {local}: {getattr(exc, 'reason', exc)}")
        return Response(body, media_type="image/jpeg" if fmt == "jpg" else "image/png", headers=headers)

    async def timeline_json(request: Request) -> Response:
        return JSONResponse(timeline.describe(), headers={"Cache-Control": "no-cache"})

    async def page_file(request: Request) -> Response:
        name = request.url.path.lstrip("/") or "index.html"
        return Response(page[name], media_type=_PAGE_FILES[name], headers={"Cache-Control": "no-cache"})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        return _error(exc.status, exc.message)

    async def starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message, dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s", request.url.path)
        return _error(500, "internal error (see the server's log)")

    app = Starlette(
        routes=[
            Route("/", page_file),
            Route("/app.js", page_file),
            Route("/app.css", page_file),
            Route("/api/timeline", timeline_json),
            Route("/frames/{name}", proxy_frame),
            Route("/original/{name}", original_frame),
        ],
        exception_handlers={HTTPError: http_error, HTTPException: starlette_error, Exception: server_error},
    )
    return TokenGate(app, token) if token else app


async def run_in_threadpool_limited(fn, limiter: anyio.CapacityLimiter) -> bytes:
    """Run ``fn`` in a worker thread, at most ``limiter``'s count at once."""
    return await anyio.to_thread.run_sync(fn, limiter=limiter)


class TokenGate:
    """Lets a request through only with the token: ``Authorization: Bearer T``,
    the cookie, or ``?token=T`` (which also sets the cookie, so a browser opened
    on ``/?token=T`` keeps working). Everything else gets a JSON 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | bytes | None) -> bool:
        if value is None:
            return False
        raw = value.encode() if isinstance(value, str) else value
        return hmac.compare_digest(raw, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and self._ok(auth[7:].strip()):
            await self.app(scope, receive, send)
            return
        if self._ok(_cookie(headers.get(b"cookie", b""))):
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self._ok(query.get("token")):
            await self.app(scope, receive, _with_cookie(send, self.token.decode()))
            return
        await _error(401, "this server needs its token: Authorization: Bearer <token>, or ?token=<token> once")(scope, receive, send)


def _cookie(raw: bytes) -> str | None:
    try:
        jar = SimpleCookie(raw.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(TOKEN_COOKIE)
    return morsel.value if morsel else None


def _with_cookie(send: Send, token: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped
