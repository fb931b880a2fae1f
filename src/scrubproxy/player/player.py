"""``Player``: mpv on the proxies of one or more segments, driven frame-exactly over JSON IPC.

mpv plays the segments as one EDL timeline (see :mod:`scrubproxy.player.edl`),
with the sources' own sound, and ``hr-seek=yes``; this class only ever asks for exact seeks to times the
frame maps say, and reads back what mpv shows through mpv's own ``time-pos``.
Every call is bounded by a timeout; the mpv process lives exactly as long as
its Player (closed by ``close()``, the ``with`` block, garbage collection or
interpreter exit).

While a segment is being recorded (followed by :meth:`ProxyCache.follow`) the
Player opens its live proxy: the EDL part of that segment ends at its newest
published frame, and mpv plays the growing Matroska file up to there.
:meth:`Player.reload` picks up the frames (and, with ``watch_session``, the
segments) published since, and :meth:`Player.live_edge` then shows the newest
frame; the End key asks for that while :meth:`Player.wait` runs. Reloading only
ever appends frames, so a frame keeps its global number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import ProxyCache
from ..errors import BadInputError, PlayerError, ProxyFormatError, ScrubProxyError
from .mpvipc import MpvClient, MpvProcess, find_mpv
from ..reader import ProxyReader
from ..settings import ProxySettings
from .edl import MpvTimeline
from ..timeline import Segment, Timeline

log = logging.getLogger(__name__)

#: Bounds of mpv's demuxer cache (forward and back): the whole session when it fits,
#: so scrubbing backward reads from memory instead of reopening the file.
CACHE_MIN = 32 * 1024 * 1024
CACHE_MAX = 1024 * 1024 * 1024
#: mpv reports a timeline this far from the frame maps' sum only if the EDL was misread.
DURATION_TOLERANCE = 0.002
#: What the Lua script sends (``script-message``) when the person asks for the live edge (End).
LIVE_EDGE_MESSAGE = "scrubproxy-live-edge"
#: What the Player sends the Lua script once the timeline file has been rewritten.
RELOAD_MESSAGE = "scrubproxy-reload"
#: How often :meth:`Player.wait` looks up from waiting for a key (seconds).
WAIT_POLL = 1.0


def lua_script() -> Path:
    """Path of the shipped mpv script (on-screen frame line, keys, open-the-original)."""
    return Path(str(resources.files("scrubproxy.player") / "scrubproxy.lua"))


def session_segments(cache: ProxyCache, session: str, settings: ProxySettings | None = None) -> list[Path]:
    """The segments of ``session`` to play: the sources of its valid proxies in
    recording order (:meth:`ProxyCache.session_sources`), then those being
    recorded now (live proxies with frames, made with ``settings``) by name:
    a segment still being recorded is the newest one.

    Raises :class:`BadInputError` when the session has neither.
    """
    settings = settings or ProxySettings()
    live = sorted(
        {e.source for e in cache.entries(session) if e.state == "live" and e.source is not None and (e.frames or 0) > 0 and cache.live_proxy(e.source, session, settings) is not None},
        key=lambda p: p.name,
    )
    try:
        valid = cache.session_sources(session)
    except BadInputError:
        if not live:
            raise
        valid = []
    return valid + [p for p in live if p not in valid]


def _as_list(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(sources, (str, Path)):
        return [Path(sources)]
    return [Path(s) for s in sources]


class _Resources:
    """What a Player owns, kept apart from it so that its finalizer does not keep it alive."""

    def __init__(self) -> None:
        self.process: MpvProcess | None = None
        self.client: MpvClient | None = None
        self.folder: Path | None = None
        self.readers: list[ProxyReader] = []


def _shutdown(res: _Resources) -> None:
    """Stop mpv, remove the private folder, close the readers (run once: by close(), GC or exit)."""
    if res.client is not None:
        res.client.close()
    if res.process is not None:
        res.process.stop()
    if res.folder is not None:
        shutil.rmtree(res.folder, ignore_errors=True)
    for reader in res.readers:
        reader.close()


class Player:
    """mpv showing the proxies of ``sources`` (one source or a list: one timeline, in that order).

    Frame numbers are global: segment i's frame k is ``segments[i].first + k``.
    ``seek_frame(g)`` shows frame g exactly; ``seek_time(t)`` shows the frame on
    screen at timeline source time t (a segment starts where the previous one's
    last frame ends); ``frame()`` says which frame mpv shows now (read from mpv,
    not remembered). Proxies are made first when missing (``cache.ensure``), so a
    source that cannot be proxied fails before mpv starts.

    A segment being recorded plays up to its newest published frame;
    :meth:`reload` picks up what was published since and :meth:`live_edge`
    shows the newest frame. ``watch_session`` (with ``session``) makes
    :meth:`reload` also append the session's segments that appeared since
    (:func:`session_segments`), after those already played.

    ``headless`` plays without a window or user config (tests, benchmarks);
    ``mpv_args`` are appended to mpv's command line, ``original_args`` to that of
    the viewer the ``o`` key opens on the original source; ``socket_path`` (default: in
    a private temporary folder) must not exist; ``timeout`` bounds every IPC call.
    """

    def __init__(
        self,
        sources: str | Path | Iterable[str | Path],
        session: str | None = None,
        cache: ProxyCache | None = None,
        *,
        settings: ProxySettings | None = None,
        headless: bool = False,
        mpv_args: Sequence[str] = (),
        socket_path: str | Path | None = None,
        timeout: float = 10.0,
        original_args: Sequence[str] = (),
        watch_session: bool = False,
    ) -> None:
        if watch_session and session is None:
            raise BadInputError(None, "watch_session needs the session to watch")
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, _shutdown, self._res)
        try:
            self._watch_session = watch_session
            self._original_args = list(original_args)
            self._open(_as_list(sources), session, cache, settings, socket_path, timeout)
            self._start(socket_path, headless, list(mpv_args))
        except BaseException:
            self._finalizer()
            raise

    # -- start ----------------------------------------------------------------------

    def _open(self, paths: list[Path], session: str | None, cache: ProxyCache | None, settings: ProxySettings | None, socket_path: str | Path | None, timeout: float) -> None:
        if not paths:
            raise BadInputError(None, "nothing to play: give at least one source")
        if socket_path is not None and Path(socket_path).exists():
            raise BadInputError(socket_path, "IPC socket path already exists (another mpv may be listening); choose another path")
        find_mpv()  # before any encode: a missing player should not cost a proxy build first
        self._cache = cache or ProxyCache()
        self._session, self._settings = session, settings
        for path in paths:  # a live segment opens as its live proxy (no waiting for its end)
            self._res.readers.append(self._cache.open(path, session, settings))
            if len(self._res.readers[-1]) == 0:
                raise ProxyFormatError(self._res.readers[-1].path, "proxy has no frames")
        self.timeline = Timeline(self._res.readers)
        self.mpv_timeline = MpvTimeline(self.timeline)
        self.timeout = timeout

    def _cache_bytes(self) -> int:
        return int(min(max(sum(r.path.stat().st_size for r in self._res.readers) * 1.1, CACHE_MIN), CACHE_MAX))

    def _title(self) -> str:
        names = [s.name for s in self.timeline.segments]
        return names[0] if len(names) == 1 else f"{names[0]} + {len(names) - 1} more"

    @property
    def growing(self) -> bool:
        """Can :meth:`reload` find more to play? A segment is live, or the session is watched."""
        return self._watch_session or any(r.live for r in self._res.readers)

    def _write_sidecar(self) -> Path:
        """The timeline file the Lua script reads, replaced whole (the script may be reading it)."""
        assert self._res.folder is not None
        sidecar = self._res.folder / "timeline.json"
        data = {**self.mpv_timeline.sidecar(), "mpv": find_mpv(), "script": str(lua_script()), "open_args": self._original_args, "live": self.growing}
        tmp = sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, sidecar)
        return sidecar

    def _mpv_args(self, sidecar: Path, headless: bool) -> list[str]:
        cache_bytes = self._cache_bytes()
        args = [
            "--pause",
            "--hr-seek=yes",
            "--keep-open=always",
            "--cache=yes",
            f"--demuxer-max-bytes={cache_bytes}",
            f"--demuxer-max-back-bytes={cache_bytes}",
            f"--script={lua_script()}",
            f"--script-opts=scrubproxy-timeline={sidecar}",
            f"--force-media-title={self._title()}",
        ]
        if headless:
            args += ["--no-config", "--vo=null", "--ao=null", "--osc=no", "--load-scripts=no"]
        return args

    def _start(self, socket_path: str | Path | None, headless: bool, extra: list[str]) -> None:
        res = self._res
        res.folder = Path(tempfile.mkdtemp(prefix="scrubproxy-play-"))
        sidecar = self._write_sidecar()
        sock = Path(socket_path) if socket_path is not None else res.folder / "mpv.sock"
        args = self._mpv_args(sidecar, headless) + extra + ["--", self.mpv_timeline.edl()]
        log.debug("starting mpv %s", " ".join(args))
        res.process = MpvProcess(args, sock, res.folder / "mpv.log")
        res.client = res.process.connect(self.timeout)
        res.client.timeout = self.timeout
        self._await_playing(replacing=False)

    def _await_playing(self, replacing: bool) -> None:
        """Wait until mpv shows the timeline just loaded (``replacing`` another one,
        whose end comes first) and check it reads it as the frame maps say."""
        mpv = self._mpv
        while (event := mpv.wait_event("playback-restart", "end-file"))["event"] == "end-file":
            if not replacing or event.get("reason") != "stop":
                raise PlayerError(self.timeline.segments[0].proxy, f"mpv could not play the proxies: {event.get('file_error') or event.get('reason')}")
        duration = mpv.get("duration")
        if duration is None or abs(duration - self.mpv_timeline.duration) > DURATION_TOLERANCE:
            raise PlayerError(None, f"mpv sees a {duration} s timeline, the frame maps say {self.mpv_timeline.duration:.6f} s")

    # -- control --------------------------------------------------------------------

    @property
    def _mpv(self) -> MpvClient:
        if self._res.client is None or not self._finalizer.alive:
            raise PlayerError(None, "the player is closed")
        return self._res.client

    @property
    def pid(self) -> int:
        """Process id of this Player's mpv."""
        if self._res.process is None:
            raise PlayerError(None, "the player is closed")
        return self._res.process.pid

    @property
    def segments(self) -> list[Segment]:
        return self.timeline.segments

    def __len__(self) -> int:
        return len(self.timeline)

    def command(self, *args: Any) -> Any:
        """Any mpv command over IPC (bounded by the timeout), for what this class does not cover."""
        return self._mpv.command(*args)

    def seek_frame(self, g: int) -> None:
        """Show global frame ``g`` exactly; returns once mpv has shown it (``playback-restart``)."""
        target = self.mpv_timeline.aim(g)
        mpv = self._mpv
        mpv.clear_events()
        mpv.command("seek", target, "absolute+exact")
        mpv.wait_event("playback-restart")

    def seek_time(self, t: float) -> int:
        """Show the frame on screen at timeline source time ``t`` (last frame whose time <= t); returns it."""
        g = self.timeline.index_at(float(t))
        self.seek_frame(g)
        return g

    def step(self, n: int = 1) -> int:
        """Move ``n`` frames (negative: back) from the frame shown, stopping at the ends; returns the new frame."""
        g = int(np.clip(self.frame() + int(n), 0, len(self) - 1))
        self.seek_frame(g)
        return g

    def frame(self) -> int:
        """The global frame mpv shows now, from its ``time-pos``."""
        t = self._mpv.get("time-pos")
        if t is None:
            raise PlayerError(None, "mpv reports no playback position")
        return self.mpv_timeline.frame_at_mpv_time(float(t))

    def time(self) -> float:
        """Timeline source time of the frame shown now."""
        return self.timeline.time_of(self.frame())

    def screenshot(self, path: str | Path) -> Path:
        """Write the video frame shown now (not the window: no OSD, no scaling) to ``path`` (PNG or JPEG by suffix)."""
        path = Path(path)
        self._mpv.command("screenshot-to-file", str(path), "video")
        return path

    # -- while recording ---------------------------------------------------------

    def _refreshed_readers(self) -> list[ProxyReader]:
        """The readers with every frame published since; a live proxy dropped
        or replaced (its recording was encoded anew) is opened again."""
        readers = []
        for reader in self._res.readers:
            try:
                reader.refresh()
            except ProxyFormatError:
                source = reader.metadata.source_path
                if source is None:
                    raise
                log.warning("%s: the live proxy was replaced; opening it again", source)
                reader.close()
                reader = self._cache.open(source, self._session, self._settings)
            readers.append(reader)
        return readers

    def _new_segments(self, known: set[Path]) -> list[ProxyReader]:
        """Readers on the watched session's segments not played yet (with frames), in recording order."""
        assert self._session is not None
        try:
            paths = session_segments(self._cache, self._session, self._settings)
        except BadInputError:  # the session was cleaned meanwhile: nothing new
            return []
        readers = []
        for path in paths:
            if path in known:
                continue
            reader = self._cache.open(path, self._session, self._settings)
            if len(reader):
                readers.append(reader)
            else:
                reader.close()
        return readers

    def reload(self) -> int:
        """Play what was published since: rebuild the EDL with the live segments'
        new frame counts (and, with ``watch_session``, the session's new segments,
        appended), load it in mpv at the frame shown now, and return the new frame count.
        Frames already reachable keep their global numbers."""
        mpv = self._mpv
        g = self.frame()
        readers = self._refreshed_readers()
        self._res.readers[:] = readers
        if self._watch_session:
            self._res.readers += self._new_segments({s for s in (r.metadata.source_path for r in readers) if s is not None})
        self.timeline = Timeline(self._res.readers)
        self.mpv_timeline = MpvTimeline(self.timeline)
        self._write_sidecar()
        mpv.command("script-message", RELOAD_MESSAGE)
        mpv.command("set_property", "force-media-title", self._title())
        for name in ("demuxer-max-bytes", "demuxer-max-back-bytes"):
            mpv.command("set_property", name, str(self._cache_bytes()))
        # The load starts with an exact seek (hr-seek=yes) to the frame shown before.
        mpv.command("set_property", "start", repr(self.mpv_timeline.aim(min(g, len(self) - 1))))
        mpv.clear_events()
        mpv.command("loadfile", self.mpv_timeline.edl(), "replace")
        self._await_playing(replacing=True)
        return len(self)

    def live_edge(self) -> int:
        """:meth:`reload`, then show the newest published frame exactly; returns its global number."""
        g = self.reload() - 1
        self.seek_frame(g)
        return g

    def wait(self) -> int:
        """Block until the person closes mpv; its exit code. Meanwhile the End
        key, while something can still grow (:attr:`growing`), jumps to the live edge."""
        if self._res.process is None or not self._finalizer.alive:
            raise PlayerError(None, "the player is closed")
        proc = self._res.process.proc
        try:
            while proc.poll() is None:
                msg = self._mpv.poll_event("client-message", timeout=WAIT_POLL)
                if msg is not None and msg.get("args") == [LIVE_EDGE_MESSAGE]:
                    self._live_edge_for_key()
        except PlayerError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)  # the person closed mpv: its socket goes first, then the process
            if proc.poll() is None:  # mpv alive but failing
                raise
        return proc.wait()

    def _live_edge_for_key(self) -> None:
        """The End key's reload: a problem with the proxies is shown in mpv, not fatal."""
        try:
            g = self.live_edge()
        except PlayerError:
            raise
        except ScrubProxyError as exc:
            log.warning("reload failed: %s", exc)
            self._mpv.command("show-text", f"scrubproxy: reload failed: {exc.reason}", 5000)
            return
        log.debug("live edge: frame %d", g)

    def close(self) -> None:
        """Stop mpv and remove the private folder. Safe to call twice."""
        self._finalizer()

    def __enter__(self) -> "Player":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._finalizer.alive else "closed"
        return f"Player({len(self.segments)} segment(s), {len(self)} frames, {state})"
