"""The timeline's thumbnail sheets for the server: cut on first use, kept open, one WebVTT track."""

from __future__ import annotations

import threading
from typing import Any

from ..thumbs import ThumbSheets, ThumbSpec, open_thumbs
from ..timeline import Segment, Timeline
from ..trickplay import Part, vtt_text


class ThumbStore:
    """Sheets of the segments of whichever timeline is asked about, kept by build:
    a segment's are made (or loaded) when first asked for. A live segment has
    none until it has ended (sheets of part of it would stand for all of it)."""

    def __init__(self, spec: ThumbSpec | None = None) -> None:
        self.spec = spec or ThumbSpec()
        self._sheets: dict[str, ThumbSheets] = {}
        self._lock = threading.Lock()

    def segment(self, seg: Segment) -> ThumbSheets | None:
        """The sheets of ``seg``; None unless the timeline holds all of it (it is still live)."""
        if not seg.reader.frame_map.complete or seg.frames != len(seg.reader):
            return None
        with self._lock:
            if seg.build_id not in self._sheets:
                self._sheets[seg.build_id] = open_thumbs(seg.reader, self.spec)
            return self._sheets[seg.build_id]

    def parts(self, timeline: Timeline) -> list[tuple[int, Part]]:
        """(segment index, its part of the track) of every segment that has sheets."""
        found = []
        for s in timeline.segments:
            sheets = self.segment(s)
            if sheets is not None:
                found.append((s.index, Part(sheets, s.reader.frame_map.times, s.source_offset)))
        return found

    def describe(self, timeline: Timeline) -> dict[str, Any]:
        """Tile size and layout, and per segment the global frame of each tile (none for a live one)."""
        segments = []
        layout = {"interval": self.spec.interval, "cols": self.spec.cols, "rows": self.spec.rows}
        for s in timeline.segments:
            sheets = self.segment(s)
            if sheets is None:
                segments.append({"index": s.index, "sheets": 0, "frames": []})
                continue
            d = sheets.describe()
            segments.append({"index": s.index, "sheets": d.pop("sheets"), "frames": [s.first + k for k in d.pop("frames")]})
            layout = d
        return {**layout, "segments": segments}

    def vtt(self, timeline: Timeline) -> str:
        """The whole timeline as one WebVTT thumbnail track, sheets addressed by segment."""
        found = self.parts(timeline)
        return vtt_text([p for _, p in found], lambda part, n: f"/thumbs/{found[part][0]}/{n}.jpg?v={timeline.version}")

    def close(self) -> None:
        with self._lock:
            for sheets in self._sheets.values():
                sheets.close()
            self._sheets.clear()
