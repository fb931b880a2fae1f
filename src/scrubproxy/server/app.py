"""The HTTP frame server: a timeline of proxies as JSON, JPEG frames and a scrubber page.

Routes (no URL ever carries a file path; segments are addressed by their
place on the timeline)::

    GET /                      the scrubber page (package data, nothing from the internet)
    GET /app.js, /app.css      its script and style
    GET /api/timeline          segments in recording order: frames, times, global frame ranges
    GET /frames/{k}.jpg        global frame k from the proxy (a slice of a memory map)
    GET /frames/at.jpg?t=S     the frame on screen at timeline time S seconds
    GET /original/{k}.jpg|png  frame k decoded exactly from the source, full resolution
    GET /api/segments/{i}/times  segment i's frame times (seconds from its start), float64 little-endian
    GET /api/thumbs            thumbnail layout: tile size, sheets, the global frame of each tile
    GET /thumbs/{i}/{n}.jpg    thumbnail sheet n of segment i (tiles row by row)
    GET /thumbnails.vtt        the timeline as a WebVTT thumbnail track (sheet.jpg#xywh=x,y,w,h)
    GET /audio/{i}.webm        segment i's sound (Opus), segment time 0 at 0 s (404 for a silent source)
    GET /favicon.ico|svg       the page's icon

``?v=VERSION`` on a frame URL (the page adds the version from /api/timeline)
gets a 409 once the timeline is another one, instead of a frame of it.

A session still being recorded (a :class:`SessionTimeline`) is served as it
grows: /api/timeline looks at the session again when the last look is a
quarter of a second old (never a frame request: they use the latest look),
marks each segment ``live`` while recorded, and keeps the version while the
timeline only grows at its end; a version seen earlier stays good while its
segments are a prefix of today's (its frame numbers still name the same
frames). A live segment has no thumbnails or sound until it has ended.
Frame responses carry ``X-Frame``, ``X-Segment``, ``X-Source-Frame``,
``X-Source-Time`` and ``X-Timeline-Time`` headers and an ETag from the proxy's
build id (a rebuilt proxy changes it); ``/frames/{k}.jpg`` and originals may
be cached for a year, time-addressed frames are revalidated. Every error is
JSON ``{"error": ...}``: 400 for a malformed query, 404 for anything that
names no frame, 401 without the token.

``/frames/`` is answered by plain ASGI in front of Starlette: a scrubbing
browser asks for hundreds of frames a second, and a Starlette route (router,
middleware, Request and Response objects) halved the throughput
(bench/serve.py). Everything else goes through Starlette.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..audio import segment_sound, source_audio
from ..errors import ScrubProxyError
from ..livetimeline import SessionTimeline
from ..original import encode_still, original_rgb
from ..thumbs import ThumbSpec
from ..timeline import Segment, Timeline
from .thumbstore import ThumbStore
from .tokengate import TokenGate
from .wallclock import recording_start

log = logging.getLogger(__name__)

CACHE_FOREVER = "private, max-age=31536000, immutable"
_FRAME_NAME = re.compile(r"([0-9]{1,15})\.(jpg|png)")
_PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_NUMBER = re.compile(r"[0-9]{1,9}")
#: Exact decodes at once: each holds a full-resolution decoder and a GOP of work.
ORIGINAL_DECODES = 2
#: Segments' sounds cut at once (each decodes and encodes a whole segment's audio).
SOUND_CUTS = 2


class HTTPError(Exception):
    """An answer to a request that names nothing servable (turned into JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_frame_name(name: str, formats: tuple[str, ...]) -> tuple[int, str]:
    """``"123.jpg"`` -> ``(123, "jpg")``; anything else (signs, paths, other
    suffixes, absurd lengths) is a 404: it names no frame."""
    m = _FRAME_NAME.fullmatch(name)
    if m is None or m[2] not in formats:
        raise HTTPError(404, f"no such frame: {name[:64]!r} (expected N.{'|'.join(formats)})")
    return int(m[1]), m[2]


def parse_time(raw: str | None) -> float:
    """The ``t`` query parameter as finite, non-negative seconds (400 otherwise)."""
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


def parse_number(raw: str, what: str, suffix: str = "") -> int:
    """A path part that must be a plain number (with ``suffix``); anything else names nothing (404)."""
    if not raw.endswith(suffix) or not _NUMBER.fullmatch(raw[: len(raw) - len(suffix)]):
        raise HTTPError(404, f"no such {what}: {raw[:64]!r}")
    return int(raw[: len(raw) - len(suffix)])


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong) or ``*``."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


class Timelines(Protocol):
    """Where the served timeline comes from: ``current`` (the latest snapshot),
    ``update()`` (a newer one when due) and ``accepts(version)``."""

    current: Timeline

    def update(self) -> Timeline: ...

    def accepts(self, version: str) -> bool: ...


class FixedTimeline:
    """A timeline that never changes, as :class:`Timelines`."""

    def __init__(self, timeline: Timeline) -> None:
        self.current = timeline

    def update(self) -> Timeline:
        return self.current

    def accepts(self, version: str) -> bool:
        return version == self.current.version


class Frames:
    """Frame lookups and the headers that describe a frame, shared by both frame routes.
    Each request takes one snapshot (``timelines.current``) and asks it everything."""

    def __init__(self, timelines: Timelines) -> None:
        self.timelines = timelines

    def check_version(self, v: str | None) -> None:
        """``?v=`` (the page sends the timeline version it drew) must still name the same frames."""
        if v is not None and not self.timelines.accepts(v):
            raise HTTPError(409, "the timeline changed since this page loaded it: reload the page")

    @staticmethod
    def locate(timeline: Timeline, k: int) -> tuple[Segment, int]:
        try:
            return timeline.locate(k)
        except IndexError as exc:
            raise HTTPError(404, f"no such frame: {exc}") from None

    @staticmethod
    def at(timeline: Timeline, t: float) -> int:
        if not timeline.frames or not math.isfinite(t) or not 0 <= t <= timeline.duration:
            raise HTTPError(404, f"no such frame: time {t} is outside the timeline (0 to {timeline.duration:.6f} s)")
        return timeline.index_at(t)

    def headers(self, timeline: Timeline, k: int, kind: str) -> tuple[str, dict[str, str]]:
        """(ETag, response headers) of global frame ``k`` of ``timeline`` served as ``kind`` (proxy, jpg, png)."""
        seg, local = self.locate(timeline, k)
        source_time = seg.reader.time_of(local)
        etag = f'"{seg.build_id[:16]}-{local}-{kind}"'
        return etag, {
            "etag": etag,
            "cache-control": CACHE_FOREVER,
            "x-frame": str(k),
            "x-segment": str(seg.index),
            "x-source-frame": str(local),
            "x-source-time": f"{source_time:.6f}",
            "x-timeline-time": f"{seg.source_offset + source_time:.6f}",
        }


class FrameRoute:
    """``GET /frames/{k}.jpg`` and ``/frames/at.jpg?t=S`` as plain ASGI; every other path goes to ``app``."""

    def __init__(self, app: ASGIApp, frames: Frames) -> None:
        self.app = app
        self.frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/frames/"):
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = self.answer(scope)
        except HTTPError as exc:
            await _error(exc.status, exc.message)(scope, receive, send)
            return
        except Exception:
            log.exception("unexpected error serving %s", scope["path"])
            await _error(500, "internal error (see the server's log)")(scope, receive, send)
            return
        raw = [(name.encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})

    def answer(self, scope: Scope) -> tuple[int, dict[str, str], bytes]:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPError(405, "method not allowed")
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"))) if scope["query_string"] else {}
        timeline = self.frames.timelines.current
        self.frames.check_version(query.get("v"))
        name = scope["path"][len("/frames/") :]
        if name == "at.jpg":
            k = self.frames.at(timeline, parse_time(query.get("t")))
        else:
            k, _ = parse_frame_name(name, ("jpg",))
        etag, headers = self.frames.headers(timeline, k, "proxy")
        if name == "at.jpg":  # which frame a time names may change with the timeline: revalidate
            headers["cache-control"] = "no-cache"
        if_none_match = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"if-none-match"), None)
        if etag_matches(if_none_match, etag):
            return 304, headers, b""
        seg, local = self.frames.locate(timeline, k)
        body = seg.reader.jpeg(local)
        headers["content-type"] = "image/jpeg"
        headers["content-length"] = str(len(body))
        return 200, headers, body


def _closing(store: ThumbStore):
    """A Starlette lifespan that closes the thumbnail sheets when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    return lifespan


def _page_file(name: str) -> bytes:
    return resources.files("scrubproxy.server").joinpath("web", name).read_bytes()


class SegmentFacts:
    """What /api/timeline says of a segment beyond its frames: its wall-clock
    start where one is known and whether it has sound (its source's header
    says; a live segment has none yet). Found once per build (and again when
    it ends): the timeline is described several times a second while it grows."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, bool], dict] = {}
        self._lock = threading.Lock()

    def of(self, seg: Segment) -> dict:
        key = (seg.build_id, seg.live)
        with self._lock:
            facts = self._known.get(key)
        if facts is None:
            wall_start, wall_start_from = recording_start(seg.source, seg.duration)
            audio = not seg.live and source_audio(seg.source) is not None
            facts = {"wall_start": wall_start, "wall_start_from": wall_start_from, "audio": audio}
            with self._lock:
                self._known[key] = facts
        return facts

    def describe(self, timeline: Timeline) -> dict:
        """/api/timeline: ``timeline.describe()`` with each segment's facts."""
        data = timeline.describe()
        for seg, d in zip(timeline.segments, data["segments"]):
            d.update(self.of(seg))
        return data


def create_app(timeline: Timeline | SessionTimeline, token: str | None = None, thumbs: ThumbSpec | None = None) -> ASGIApp:
    """The ASGI app serving ``timeline`` (a session's that grows while recorded,
    or a fixed one); with ``token``, every request must carry it.
    ``thumbs``: how thumbnail sheets are cut (made on first request, kept in the cache).

    The app never closes ``timeline``: its owner does, after the server stops.
    """
    timelines: Timelines = FixedTimeline(timeline) if isinstance(timeline, Timeline) else timeline
    frames = Frames(timelines)
    page = {name: _page_file(name) for name in _PAGE_FILES}
    original_slots = anyio.CapacityLimiter(ORIGINAL_DECODES)
    sound_slots = anyio.CapacityLimiter(SOUND_CUTS)
    sound_locks: dict[str, threading.Lock] = {}  # by build: one cut per segment at a time
    store = ThumbStore(thumbs)
    facts = SegmentFacts()

    def segment(raw: str, suffix: str = "") -> Segment:
        """The segment a path part names, on the latest snapshot (404 when none)."""
        i = parse_number(raw, "segment", suffix)
        segments = timelines.current.segments
        if i >= len(segments):
            raise HTTPError(404, f"no such segment: {i} (the timeline has 0 to {len(segments) - 1})")
        return segments[i]

    async def segment_times(request: Request) -> Response:
        frames.check_version(request.query_params.get("v"))
        seg = segment(request.path_params["segment"])
        body = seg.reader.frame_map.times[: seg.frames].astype("<f8").tobytes()
        return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})

    async def thumbs_json(request: Request) -> Response:
        frames.check_version(request.query_params.get("v"))
        return JSONResponse(await anyio.to_thread.run_sync(store.describe, timelines.current), headers={"Cache-Control": "no-cache"})

    async def thumb_sheet(request: Request) -> Response:
        frames.check_version(request.query_params.get("v"))
        seg = segment(request.path_params["segment"])
        n = parse_number(request.path_params["name"], "sheet", ".jpg")
        sheets = await anyio.to_thread.run_sync(store.segment, seg)
        if sheets is None:
            raise HTTPError(404, f"segment {seg.index} is still being recorded: its thumbnails come when it ends")
        try:
            body = sheets.sheet(n)
        except IndexError as exc:
            raise HTTPError(404, f"no such sheet: {exc}") from None
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-cache", "etag": f'"{sheets.build_id[:16]}-{n}-sheet"'})

    async def thumbs_vtt(request: Request) -> Response:
        text = await anyio.to_thread.run_sync(store.vtt, timelines.current)
        return Response(text, media_type="text/vtt; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def original_frame(request: Request) -> Response:
        current = timelines.current
        frames.check_version(request.query_params.get("v"))
        k, fmt = parse_frame_name(request.path_params["name"], ("jpg", "png"))
        etag, headers = frames.headers(current, k, fmt)
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        seg, local = frames.locate(current, k)
        meta = seg.reader.metadata
        if meta.source_path is None:
            raise HTTPError(404, f"segment {seg.index} does not record its source")

        def work() -> bytes:
            return encode_still(original_rgb(meta.source_path, seg.reader.pts_of(local), meta.settings.get("stream")), fmt)

        try:
            body = await anyio.to_thread.run_sync(work, limiter=original_slots)
        except (ScrubProxyError, OSError) as exc:
            log.warning("original frame %d: %s", k, exc)
            return _error(502, f"the source of segment {seg.index} could not give frame {local}: {getattr(exc, 'reason', exc)}")
        return Response(body, media_type="image/jpeg" if fmt == "jpg" else "image/png", headers=headers)

    async def sound(request: Request) -> Response:
        frames.check_version(request.query_params.get("v"))
        seg = segment(request.path_params["name"], ".webm")
        i = seg.index
        if not facts.of(seg)["audio"]:
            raise HTTPError(404, f"segment {i} has no sound" + (" yet: it is still being recorded" if seg.live else ""))
        lock = sound_locks.setdefault(seg.build_id, threading.Lock())

        def work() -> Path | None:
            with lock:
                return segment_sound(seg.reader)

        try:
            path = await anyio.to_thread.run_sync(work, limiter=sound_slots)
        except (ScrubProxyError, OSError) as exc:
            log.warning("sound of segment %d: %s", i, exc)
            return _error(502, f"the source of segment {i} could not give its sound: {getattr(exc, 'reason', exc)}")
        if path is None:
            raise HTTPError(404, f"segment {i} has no sound")
        return FileResponse(path, media_type="audio/webm", headers={"Cache-Control": "no-cache"})

    async def timeline_json(request: Request) -> Response:
        return JSONResponse(facts.describe(timelines.update()), headers={"Cache-Control": "no-cache"})

    async def page_file(request: Request) -> Response:
        name = {"": "index.html", "favicon.ico": "favicon.svg"}.get(request.url.path.lstrip("/"), request.url.path.lstrip("/"))
        return Response(page[name], media_type=_PAGE_FILES[name], headers={"Cache-Control": "no-cache"})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        return _error(exc.status, exc.message)

    async def starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail)))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s", request.url.path)
        return _error(500, "internal error (see the server's log)")

    app = Starlette(
        routes=[
            Route("/", page_file),
            Route("/app.js", page_file),
            Route("/app.css", page_file),
            Route("/favicon.svg", page_file),
            Route("/favicon.ico", page_file),
            Route("/api/timeline", timeline_json),
            Route("/api/segments/{segment}/times", segment_times),
            Route("/api/thumbs", thumbs_json),
            Route("/thumbs/{segment}/{name}", thumb_sheet),
            Route("/thumbnails.vtt", thumbs_vtt),
            Route("/original/{name}", original_frame),
            Route("/audio/{name}", sound),
        ],
        exception_handlers={HTTPError: http_error, HTTPException: starlette_error, Exception: server_error},
        lifespan=_closing(store),
    )
    served = FrameRoute(app, frames)
    return TokenGate(served, token) if token else served
