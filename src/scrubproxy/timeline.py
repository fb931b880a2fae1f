"""The segments of one recording as one timeline: global frame g <-> (segment, source frame) <-> timeline time.

A recording is several segment files; a viewer wants one timeline. Global
frame numbers run through the segments in recording order, and timeline
(source) time is a segment's own source time plus the durations of the
segments before it (recorders leave no gaps we could measure, so none are
invented). Every lookup goes through the frame maps, never ``k / fps``.
Read-only after construction and safe to share between threads: a timeline
is a snapshot of its readers' lengths, so a live reader that grows afterwards
(``ProxyReader.refresh``) does not change it; :mod:`scrubproxy.livetimeline`
makes the next snapshot. The HTTP server serves it; :mod:`scrubproxy.edl`
lays it out for mpv.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .reader import ProxyReader


@dataclass(frozen=True)
class Segment:
    """One proxy on the timeline: global frames ``first`` to ``first + frames - 1``,
    starting at timeline time ``source_offset``. ``frames``, ``duration`` and
    ``live`` are as the reader was when the timeline was made (a live reader
    may have grown since)."""

    index: int
    reader: ProxyReader
    first: int
    source_offset: float
    frames: int
    duration: float
    live: bool

    @property
    def source(self) -> Path | None:
        return self.reader.metadata.source_path

    @property
    def proxy(self) -> Path:
        return self.reader.path

    @property
    def name(self) -> str:
        """The source's file name (never its folder: names go to clients)."""
        return self.source.name if self.source else self.proxy.name

    @property
    def build_id(self) -> str:
        """Identifies this build of the proxy; a rebuilt proxy gets a new one."""
        return self.reader.frame_map.header.build_id.hex()


class Timeline:
    """Proxies in recording order, addressed by global frame or timeline time.

    ``Timeline(readers)`` leaves the readers to their owner;
    ``Timeline.open(proxy_paths)`` opens them and closes them with itself.
    No readers make an empty timeline (0 frames): a session whose recording
    has not given a frame yet.
    """

    def __init__(self, readers: Sequence[ProxyReader], owns_readers: bool = False) -> None:
        self.readers = list(readers)
        self._owns_readers = owns_readers
        self.segments: list[Segment] = []
        first, offset = 0, 0.0
        for i, reader in enumerate(self.readers):
            frames, duration = len(reader), reader.metadata.duration  # one moment: the reader may grow meanwhile
            self.segments.append(Segment(i, reader, first, offset, frames, duration, reader.live))
            first += frames
            offset += duration
        self.frames = first
        self.duration = offset
        self._firsts = np.array([s.first for s in self.segments])
        self._offsets = np.array([s.source_offset for s in self.segments])
        #: The segments' builds in order: a segment that grows keeps its build id.
        self.build_ids = tuple(s.build_id for s in self.segments)
        #: Changes whenever any proxy is rebuilt or the segments change (not when a live one grows):
        #: a cache-busting version under which a global frame number always names the same frame.
        self.version = hashlib.sha256("".join(self.build_ids).encode()).hexdigest()[:16]

    @property
    def live(self) -> bool:
        """Is a segment still being recorded (the timeline may grow at its end)?"""
        return any(s.live for s in self.segments)

    @classmethod
    def open(cls, proxy_paths: Sequence[str | Path]) -> "Timeline":
        readers: list[ProxyReader] = []
        try:
            for path in proxy_paths:
                readers.append(ProxyReader(path))
            return cls(readers, owns_readers=True)
        except BaseException:
            for reader in readers:
                reader.close()
            raise

    def __len__(self) -> int:
        return self.frames

    def check_frame(self, g: int) -> int:
        """``g`` as a valid global frame number; IndexError (naming the range) otherwise."""
        if not isinstance(g, (int, np.integer)) or isinstance(g, bool):
            raise TypeError(f"frame number must be an integer, got {type(g).__name__}")
        if not 0 <= g < self.frames:
            raise IndexError(f"frame {g} out of range: the timeline has frames 0 to {self.frames - 1}")
        return int(g)

    def locate(self, g: int) -> tuple[Segment, int]:
        """(segment, source frame within it) of global frame ``g``."""
        g = self.check_frame(g)
        seg = self.segments[int(np.searchsorted(self._firsts, g, side="right")) - 1]
        return seg, g - seg.first

    def time_of(self, g: int) -> float:
        """Timeline time of global frame ``g``: its segment's start plus its own source time."""
        seg, local = self.locate(g)
        return seg.source_offset + seg.reader.time_of(local)

    def index_at(self, t: float) -> int:
        """The global frame on screen at timeline time ``t`` (the last one whose time <= t;
        the first frame before the start, the last one after the end)."""
        if not self.frames:
            raise IndexError("the timeline has no frames yet")
        i = max(int(np.searchsorted(self._offsets, t, side="right")) - 1, 0)
        seg = self.segments[i]
        return seg.first + min(seg.reader.index_at(t - seg.source_offset), seg.frames - 1)

    def describe(self) -> dict[str, Any]:
        """The timeline as JSON-ready data (names, counts, ranges, times; no paths)."""
        return {
            "version": self.version,
            "frames": self.frames,
            "duration": self.duration,
            "live": self.live,
            "segments": [
                {
                    "index": s.index,
                    "name": s.name,
                    "build": s.build_id[:16],
                    "live": s.live,
                    "frames": s.frames,
                    "first_frame": s.first,
                    "last_frame": s.first + s.frames - 1,
                    "start_time": s.source_offset,
                    "duration": s.duration,
                    "average_rate": s.reader.metadata.average_rate,
                    "variable_rate": s.reader.metadata.variable_rate,
                    "width": s.reader.metadata.width,
                    "height": s.reader.metadata.height,
                }
                for s in self.segments
            ],
        }

    def close(self) -> None:
        if self._owns_readers:
            for reader in self.readers:
                reader.close()

    def __enter__(self) -> "Timeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
