"""A session's proxies as one timeline: global frame numbers, mpv's EDL, and the times mpv will show.

Pure arithmetic over frame maps (no I/O besides what the readers already
mapped). mpv plays the proxies through an EDL whose parts are cut by frame:
part i starts at its proxy's first frame (``proxy_pts[0]``, the file's own
timestamp, so a file whose video starts late, as Matroska after audio
priming, is cut where its video starts) and lasts exactly to the end of its
last frame, so consecutive segments touch with no gap and no overlap. On that
timeline frame k of part i is shown at ``offset_i + raw_k - raw_0``.

mpv's hr-seek drops every frame earlier than ``target - 5 ms`` and shows the
first one it keeps, so an exact seek to a time inside a frame shows the next
frame. :meth:`Timeline.aim` therefore aims 4.9 ms after a frame's own time:
the previous frame (at least 0.1 ms earlier) is dropped, the frame itself is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .reader import ProxyReader

#: mpv drops frames with pts < target - HRSEEK_SLACK during an exact seek (player/video.c).
HRSEEK_SLACK = 0.005
#: Where seek_frame aims, after the frame's own time (see the module docstring).
AIM_AFTER = 0.0049
#: time-pos is printed with microseconds; a frame's time matches within this.
MATCH_TOLERANCE = 1e-4
#: Every EDL part after the first starts this long before its first frame. mpv
#: drops a decoded frame whose timeline time falls before its part's start, and
#: the first frame's time (part start - source start + pts) can round to just
#: below it: the frame was lost (Matroska), or, with AVI's dts-only packets, every
#: later frame of the part showed one frame late. Measured on mpv 0.35. The first
#: part needs no lead (mpv does not honour a negative start there).
EDL_LEAD = 0.0005
#: Last-frame length of a Matroska proxy with one frame (no neighbour to measure).
SINGLE_FRAME_LENGTH = 1 / 30


@dataclass(frozen=True)
class Segment:
    """One proxy on the timeline. ``first`` is its first global frame number."""

    name: str
    source: Path | None
    proxy: Path
    first: int
    count: int
    edl_start: float  # raw time of frame 0 inside the proxy file (s)
    edl_length: float  # frame 0's start to the end of the last frame (s)
    offset: float  # where the segment starts on mpv's timeline (s)
    source_offset: float  # where it starts in global source time (s)


def _part_length(raw: np.ndarray, reader: ProxyReader) -> float:
    """Frame 0 to the end of the last frame, in the proxy's own clock (seconds)."""
    n = len(raw)
    if reader.metadata.container == "avi":
        # AVI: frame k is the chunk at k / rate, each exactly one tick long.
        fm = reader.frame_map
        return float((int(fm.proxy_pts[-1]) + 1) * fm.header.proxy_time_base) - float(raw[0])
    last = float(raw[-1] - raw[-2]) if n > 1 else SINGLE_FRAME_LENGTH
    return float(raw[-1] - raw[0]) + last


class Timeline:
    """Global frame g <-> (segment, local frame) <-> mpv time <-> source time."""

    def __init__(self, readers: Sequence[ProxyReader]) -> None:
        if not readers:
            raise ValueError("a timeline needs at least one proxy")
        self.readers = list(readers)
        segments: list[Segment] = []
        mpv_times, source_times = [], []
        offset = source_offset = 0.0
        first = 0
        for reader in self.readers:
            fm = reader.frame_map
            tb = fm.header.proxy_time_base
            raw = fm.proxy_pts.astype(np.float64) * (tb.numerator / tb.denominator)
            length = _part_length(raw, reader)
            n = len(reader)
            lead = EDL_LEAD if segments else 0.0
            source = reader.metadata.source_path
            segments.append(
                Segment(
                    name=source.name if source else reader.path.name,
                    source=source,
                    proxy=reader.path,
                    first=first,
                    count=n,
                    edl_start=float(raw[0]) - lead,
                    edl_length=length + lead,
                    offset=offset,
                    source_offset=source_offset,
                )
            )
            mpv_times.append(offset + lead + (raw - raw[0]))
            source_times.append(source_offset + fm.times)
            # Summed in the order mpv sums the parts' lengths, so joins agree to the bit.
            offset += length + lead
            source_offset += reader.metadata.duration
            first += n
        self.segments = segments
        self.mpv_times = np.concatenate(mpv_times)
        self.source_times = np.concatenate(source_times)
        self._firsts = np.array([s.first for s in segments])
        self._source_offsets = np.array([s.source_offset for s in segments])
        self.duration = offset

    def __len__(self) -> int:
        return len(self.mpv_times)

    def check_frame(self, g: int) -> int:
        """``g`` as a valid global frame number; IndexError (naming the range) otherwise."""
        if not isinstance(g, (int, np.integer)) or isinstance(g, bool):
            raise TypeError(f"frame number must be an integer, got {type(g).__name__}")
        if not 0 <= g < len(self):
            raise IndexError(f"frame {g} out of range: the timeline has frames 0 to {len(self) - 1}")
        return int(g)

    def locate(self, g: int) -> tuple[Segment, int]:
        """The segment holding global frame ``g`` and the frame's number inside it."""
        g = self.check_frame(g)
        i = int(np.searchsorted(self._firsts, g, side="right")) - 1
        seg = self.segments[i]
        return seg, g - seg.first

    def aim(self, g: int) -> float:
        """The time to give mpv's exact seek so that it shows frame ``g``."""
        return float(self.mpv_times[self.check_frame(g)]) + AIM_AFTER

    def frame_at_mpv_time(self, t: float) -> int:
        """The frame mpv shows when its ``time-pos`` is ``t``."""
        g = int(np.searchsorted(self.mpv_times, t + MATCH_TOLERANCE, side="right")) - 1
        return min(max(g, 0), len(self) - 1)

    def index_at(self, t: float) -> int:
        """The global frame on screen at global source time ``t``: last frame whose time <= t.

        Segment i covers source times [source_offset_i, source_offset_i + its duration).
        """
        i = max(int(np.searchsorted(self._source_offsets, t, side="right")) - 1, 0)
        seg = self.segments[i]
        return seg.first + self.readers[i].index_at(t - seg.source_offset)

    def time_of(self, g: int) -> float:
        """Global source time of frame ``g``: its segment's start plus its own source time."""
        return float(self.source_times[self.check_frame(g)])

    def edl(self) -> str:
        """An ``edl://`` URL playing every segment once, cut at exact frame boundaries."""
        parts = []
        for seg in self.segments:
            path = str(seg.proxy)
            parts.append(f"%{len(path.encode())}%{path},start={seg.edl_start!r},length={seg.edl_length!r}")
        return "edl://" + ";".join(parts)

    def sidecar(self) -> dict[str, Any]:
        """What the Lua script needs: per segment its frames' mpv times, source times and source pts."""
        out = []
        for seg, reader in zip(self.segments, self.readers):
            fm = reader.frame_map
            stb = fm.header.source_time_base
            sl = slice(seg.first, seg.first + seg.count)
            out.append(
                {
                    "name": seg.name,
                    "source": str(seg.source) if seg.source else None,
                    "first": seg.first,
                    "offset": seg.offset,
                    "source_offset": seg.source_offset,
                    "mpv_times": [round(x, 6) for x in self.mpv_times[sl].tolist()],
                    "source_times": [round(x, 6) for x in fm.times.tolist()],
                    # absolute source pts in seconds: what mpv calls this frame's time before
                    # it subtracts the file's demuxer-start-time
                    "source_pts": [round(x, 9) for x in (fm.source_pts.astype(np.float64) * (stb.numerator / stb.denominator)).tolist()],
                }
            )
        return {"version": 1, "aim_after": AIM_AFTER, "segments": out}
