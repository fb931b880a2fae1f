"""``Player``: mpv on the proxies of one or more segments, driven frame-exactly over JSON IPC.

mpv plays the segments as one EDL timeline (see :mod:`scrubproxy.player.edl`),
with the sources' own sound, and ``hr-seek=yes``; this class only ever asks for exact seeks to times the
frame maps say, and reads back what mpv shows through mpv's own ``time-pos``.
Every call is bounded by a timeout; the mpv process lives exactly as long as
its Player (closed by ``close()``, the ``with`` block, garbage collection or
interpreter exit).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import ProxyCache
from ..errors import BadInputError, PlayerError, ProxyFormatError
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


def lua_script() -> Path:
    """Path of the shipped mpv script (on-screen frame line, keys, open-the-original)."""
    return Path(str(resources.files("scrubproxy.player") / "scrubproxy.lua"))


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
    ) -> None:
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, _shutdown, self._res)
        try:
            self._open(_as_list(sources), session, cache, settings, socket_path, timeout)
            self._start(socket_path, headless, list(mpv_args), list(original_args))
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
        cache = cache or ProxyCache()
        for proxy in [cache.ensure(path, session, settings) for path in paths]:
            self._res.readers.append(ProxyReader(proxy))
            if len(self._res.readers[-1]) == 0:
                raise ProxyFormatError(proxy, "proxy has no frames")
        self.timeline = Timeline(self._res.readers)
        self.mpv_timeline = MpvTimeline(self.timeline)
        self.timeout = timeout

    def _mpv_args(self, sidecar: Path, headless: bool) -> list[str]:
        cache_bytes = int(min(max(sum(r.path.stat().st_size for r in self._res.readers) * 1.1, CACHE_MIN), CACHE_MAX))
        names = [s.name for s in self.timeline.segments]
        title = names[0] if len(names) == 1 else f"{names[0]} + {len(names) - 1} more"
        args = [
            "--pause",
            "--hr-seek=yes",
            "--keep-open=always",
            "--cache=yes",
            f"--demuxer-max-bytes={cache_bytes}",
            f"--demuxer-max-back-bytes={cache_bytes}",
            f"--script={lua_script()}",
            f"--script-opts=scrubproxy-timeline={sidecar}",
            f"--force-media-title={title}",
        ]
        if headless:
            args += ["--no-config", "--vo=null", "--ao=null", "--osc=no", "--load-scripts=no"]
        return args

    def _start(self, socket_path: str | Path | None, headless: bool, extra: list[str], original_args: list[str]) -> None:
        res = self._res
        res.folder = Path(tempfile.mkdtemp(prefix="scrubproxy-play-"))
        sidecar = res.folder / "timeline.json"
        data = {**self.mpv_timeline.sidecar(), "mpv": find_mpv(), "script": str(lua_script()), "open_args": original_args}
        sidecar.write_text(json.dumps(data, separators=(",", ":")))
        sock = Path(socket_path) if socket_path is not None else res.folder / "mpv.sock"
        args = self._mpv_args(sidecar, headless) + extra + ["--", self.mpv_timeline.edl()]
        log.debug("starting mpv %s", " ".join(args))
        res.process = MpvProcess(args, sock, res.folder / "mpv.log")
        res.client = res.process.connect(self.timeout)
        res.client.timeout = self.timeout
        event = res.client.wait_event("playback-restart", "end-file")
        if event["event"] == "end-file":
            raise PlayerError(self.timeline.segments[0].proxy, f"mpv could not play the proxies: {event.get('file_error') or event.get('reason')}")
        duration = res.client.get("duration")
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

    def wait(self) -> int:
        """Block until the person closes mpv; its exit code."""
        if self._res.process is None or not self._finalizer.alive:
            raise PlayerError(None, "the player is closed")
        return self._res.process.proc.wait()

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
