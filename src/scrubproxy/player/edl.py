"""mpv's view of a timeline: the EDL that plays it, when mpv shows each frame, where to aim a seek.

mpv plays the proxies through an EDL whose parts are cut by frame: part i
starts at its proxy's first frame (``proxy_pts[0]``, the file's own
timestamp, so a file whose video starts late, as Matroska after audio
priming, is cut where its video starts) and lasts exactly to the end of its
last frame, so consecutive segments touch with no gap and no overlap. On that
timeline frame k of part i is shown at ``offset_i + raw_k - raw_0``.

Sound comes from the sources themselves, as a second EDL stream
(``!new_stream``) whose parts cut each source's audio at the same source
times as the video part of its proxy (``!delay_open,media_type=audio`` takes
only the audio track of those files, so the sources' own video is never
shown). A source without audio, or one that cannot be opened, plays silence
of the same length (``anullsrc``): measured on mpv 0.35, a part that holds no
audio track is skipped over and every later sound comes early (1.9 s at the
next join), while a silent part keeps the joins in sync (A-V difference
under 35 ms at the join, under 0.1 ms within 1 s). Sound plays only while
mpv plays: exact seeks and frame steps made paused write no sample.

mpv's hr-seek drops every frame earlier than ``target - 5 ms`` and shows the
first one it keeps, so an exact seek to a time inside a frame shows the next
frame. :meth:`MpvTimeline.aim` therefore aims 4.9 ms after a frame's own time:
the previous frame (at least 0.1 ms earlier) is dropped, the frame itself is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import source_audio
from ..reader import ProxyReader
from ..timeline import Segment, Timeline

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


def _edl_item(path: str, start: float, length: float) -> str:
    return f"%{len(path.encode())}%{path},start={start!r},length={length!r}"


@dataclass(frozen=True)
class EdlPart:
    """One segment as an EDL part: ``start``/``length`` in the proxy file's own
    clock, ``offset`` where the part starts on mpv's timeline (seconds)."""

    segment: Segment
    start: float
    length: float
    offset: float

    @property
    def source_start(self) -> float:
        """Where the part starts in the source's own clock: the same instant as
        ``start`` in the proxy's (the first frame's source pts, less the lead)."""
        fm = self.segment.reader.frame_map
        lead = float(fm.proxy_pts[0] * fm.header.proxy_time_base) - self.start
        return float(fm.source_pts[0] * fm.header.source_time_base) - lead


def _part_length(raw: np.ndarray, reader: ProxyReader) -> float:
    """Frame 0 to the end of the last frame, in the proxy's own clock (seconds)."""
    if reader.metadata.container == "avi":
        # AVI: frame k is the chunk at k / rate, each exactly one tick long.
        fm = reader.frame_map
        return float((int(fm.proxy_pts[-1]) + 1) * fm.header.proxy_time_base) - float(raw[0])
    last = float(raw[-1] - raw[-2]) if len(raw) > 1 else SINGLE_FRAME_LENGTH
    return float(raw[-1] - raw[0]) + last


class MpvTimeline:
    """A :class:`Timeline` as mpv plays it: the ``edl://`` URL, the mpv time of
    every global frame, and the times to aim exact seeks at.
    Each source's audio format is read from its header once, here.
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        parts: list[EdlPart] = []
        mpv_times = []
        offset = 0.0
        for seg in timeline.segments:
            fm = seg.reader.frame_map
            tb = fm.header.proxy_time_base
            raw = fm.proxy_pts.astype(np.float64) * (tb.numerator / tb.denominator)
            length = _part_length(raw, seg.reader)
            lead = EDL_LEAD if parts else 0.0
            parts.append(EdlPart(seg, float(raw[0]) - lead, length + lead, offset))
            mpv_times.append(offset + lead + (raw - raw[0]))
            # Summed in the order mpv sums the parts' lengths, so joins agree to the bit.
            offset += length + lead
        self.parts = parts
        self.mpv_times = np.concatenate(mpv_times)
        #: The timeline's length as mpv reports it (``duration``).
        self.duration = offset
        #: Per part: the source's (sample rate, layout), None where it has no sound.
        self.audio = [source_audio(seg.source) for seg in timeline.segments]

    def aim(self, g: int) -> float:
        """The time to give mpv's exact seek so that it shows frame ``g``."""
        return float(self.mpv_times[self.timeline.check_frame(g)]) + AIM_AFTER

    def frame_at_mpv_time(self, t: float) -> int:
        """The frame mpv shows when its ``time-pos`` is ``t``."""
        g = int(np.searchsorted(self.mpv_times, t + MATCH_TOLERANCE, side="right")) - 1
        return min(max(g, 0), len(self.timeline) - 1)

    @property
    def has_audio(self) -> bool:
        return any(a is not None for a in self.audio)

    def edl(self) -> str:
        """An ``edl://`` URL playing every segment once, cut at exact frame
        boundaries, with the sources' sound as a second stream when any has sound."""
        video = [_edl_item(str(p.segment.proxy), p.start, p.length) for p in self.parts]
        if not self.has_audio:
            return "edl://" + ";".join(video)
        rate, layout = next(a for a in self.audio if a is not None)
        sound = []
        for part, fmt in zip(self.parts, self.audio):
            if fmt is None:
                sound.append(_edl_item(f"av://lavfi:anullsrc=r={rate}:cl={layout}", 0.0, part.length))
            else:
                sound.append(_edl_item(str(part.segment.source), part.source_start, part.length))
        return "edl://" + ";".join(["!new_stream", *video, "!new_stream", "!delay_open,media_type=audio", *sound])

    def sidecar(self) -> dict[str, Any]:
        """What the Lua script needs: per segment its frames' mpv times, source times and source pts."""
        out = []
        for part in self.parts:
            seg = part.segment
            fm = seg.reader.frame_map
            stb = fm.header.source_time_base
            out.append(
                {
                    "name": seg.name,
                    "source": str(seg.source) if seg.source else None,
                    "first": seg.first,
                    "offset": part.offset,
                    "source_offset": seg.source_offset,
                    "mpv_times": [round(x, 6) for x in self.mpv_times[seg.first : seg.first + seg.frames].tolist()],
                    "source_times": [round(x, 6) for x in fm.times.tolist()],
                    # absolute source pts in seconds: what mpv calls this frame's time before
                    # it subtracts the file's demuxer-start-time
                    "source_pts": [round(x, 9) for x in (fm.source_pts.astype(np.float64) * (stb.numerator / stb.denominator)).tolist()],
                }
            )
        return {"version": 1, "aim_after": AIM_AFTER, "segments": out}
