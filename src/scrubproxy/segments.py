"""The segments of one recording laid end to end: global frame k <-> (segment, source frame).

A recording is several segment files; a viewer wants one timeline. Global
frame numbers run through the segments in recording order, and timeline time
is each segment's source time plus the durations of the segments before it
(recorders leave no gaps we could measure, so none are invented). Every
lookup goes through the segments' frame maps, never through ``k / fps``.
Read-only after construction and safe to share between threads.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .reader import ProxyReader


@dataclass(frozen=True)
class Segment:
    """One proxy on the timeline: its global frames are ``first_frame`` up to
    (not including) ``first_frame + frames``; its time starts at ``start_time``."""

    index: int
    reader: ProxyReader
    first_frame: int
    start_time: float

    @property
    def frames(self) -> int:
        return len(self.reader)

    @property
    def duration(self) -> float:
        return self.reader.metadata.duration

    @property
    def name(self) -> str:
        """The source's file name (never its folder: names go to clients)."""
        source = self.reader.metadata.source_path
        return source.name if source else self.reader.path.name

    @property
    def build_id(self) -> str:
        """Identifies this build of the proxy; a rebuilt proxy gets a new one."""
        return self.reader.frame_map.header.build_id.hex()


class Timeline:
    """Proxies in recording order, addressed by global frame or timeline time."""

    def __init__(self, proxy_paths: Sequence[str | Path]) -> None:
        if not proxy_paths:
            raise ValueError("a timeline needs at least one proxy")
        self.segments: list[Segment] = []
        first, start = 0, 0.0
        try:
            for i, path in enumerate(proxy_paths):
                reader = ProxyReader(path)
                seg = Segment(i, reader, first, start)
                self.segments.append(seg)
                first += seg.frames
                start += seg.duration
        except BaseException:
            self.close()
            raise
        self.frames = first
        self.duration = start
        self._firsts = [s.first_frame for s in self.segments]
        self._starts = [s.start_time for s in self.segments]
        #: Changes whenever any proxy is rebuilt or the segments change: a cache-busting version.
        self.version = hashlib.sha256("".join(s.build_id for s in self.segments).encode()).hexdigest()[:16]

    def locate(self, k: int) -> tuple[Segment, int]:
        """(segment, source frame within it) of global frame ``k``; IndexError when outside."""
        if not 0 <= k < self.frames:
            raise IndexError(f"frame {k} is outside the timeline (0 to {self.frames - 1})")
        seg = self.segments[bisect.bisect_right(self._firsts, k) - 1]
        return seg, k - seg.first_frame

    def frame_at(self, t: float) -> int:
        """Global frame on screen at timeline time ``t`` (seconds, 0 <= t <= duration)."""
        if not math.isfinite(t) or t < 0 or t > self.duration:
            raise ValueError(f"time {t} is outside the timeline (0 to {self.duration:.6f} s)")
        seg = self.segments[max(0, bisect.bisect_right(self._starts, t) - 1)]
        return seg.first_frame + seg.reader.index_at(t - seg.start_time)

    def time_of(self, k: int) -> float:
        """Timeline time of global frame ``k`` in seconds."""
        seg, local = self.locate(k)
        return seg.start_time + seg.reader.time_of(local)

    def describe(self) -> dict[str, Any]:
        """The timeline as JSON-ready data (names, counts, ranges, times; no paths)."""
        return {
            "version": self.version,
            "frames": self.frames,
            "duration": self.duration,
            "segments": [
                {
                    "index": s.index,
                    "name": s.name,
                    "frames": s.frames,
                    "first_frame": s.first_frame,
                    "last_frame": s.first_frame + s.frames - 1,
                    "start_time": s.start_time,
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
        for seg in self.segments:
            seg.reader.close()

    def __enter__(self) -> Timeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
