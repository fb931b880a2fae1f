"""The timeline's thumbnail sheets for the server: cut on first use, kept open, one WebVTT track."""

from __future__ import annotations

import threading
from typing import Any

from ..thumbs import ThumbSheets, ThumbSpec, open_thumbs
from ..timeline import Timeline
from ..trickplay import Part, vtt_text


class ThumbStore:
    """Sheets of every segment of ``timeline``; a segment's are made (or loaded) when first asked for."""

    def __init__(self, timeline: Timeline, spec: ThumbSpec | None = None) -> None:
        self.timeline = timeline
        self.spec = spec or ThumbSpec()
        self._sheets: dict[int, ThumbSheets] = {}
        self._lock = threading.Lock()

    def segment(self, i: int) -> ThumbSheets:
        """The sheets of segment ``i`` (IndexError when there is no such segment)."""
        if not 0 <= i < len(self.timeline.segments):
            raise IndexError(f"no segment {i}: the timeline has segments 0 to {len(self.timeline.segments) - 1}")
        with self._lock:
            if i not in self._sheets:
                self._sheets[i] = open_thumbs(self.timeline.segments[i].reader, self.spec)
            return self._sheets[i]

    def parts(self) -> list[Part]:
        return [Part(self.segment(s.index), s.reader.frame_map.times, s.source_offset) for s in self.timeline.segments]

    def describe(self) -> dict[str, Any]:
        """Tile size and layout, and per segment the global frame of each tile."""
        segments = []
        for s in self.timeline.segments:
            d = self.segment(s.index).describe()
            segments.append({"index": s.index, "sheets": d.pop("sheets"), "frames": [s.first + k for k in d.pop("frames")]})
        return {**d, "segments": segments}

    def vtt(self, version: str) -> str:
        """The whole timeline as one WebVTT thumbnail track, sheets addressed by segment."""
        return vtt_text(self.parts(), lambda seg, n: f"/thumbs/{seg}/{n}.jpg?v={version}")

    def close(self) -> None:
        with self._lock:
            for sheets in self._sheets.values():
                sheets.close()
            self._sheets.clear()
