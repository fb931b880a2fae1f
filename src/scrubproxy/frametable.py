"""A source's exact frame table (pts, duration, key frame) for other tools, from its proxy's frame map.

Frame k of the table is frame k of the source (presentation order), with its
pts in the source stream's time base, exactly as the frame map recorded it at
encode time. Nothing is decoded: durations are the gaps between consecutive
pts (the last frame keeps its packet's duration, else the gap before it), and
key frames come from one demux-only pass over the source's packets, whose
keyframe flags are what a demuxer seeks to (the MP4 sync-sample table, the
Matroska keyframe bit), so a tool that seeks by this table lands where its
demuxer can start decoding.

Formats:

- ``torchcodec``: ``{"frames": [{"pts", "duration", "key_frame": 0|1}, ...]}``,
  the shape ``torchcodec.decoders.VideoDecoder(custom_frame_mappings=...)``
  reads (``_read_custom_frame_mappings``: keys ``pts``, ``duration``,
  ``key_frame`` on every frame, integers in stream time-base units, as
  ``ffprobe -show_frames -show_entries frame=pts,duration,key_frame -of json``
  writes them). Give torchcodec the same ``stream_index`` (in the ``json`` form).
- ``json``: the same frames with their index and time in seconds, plus the
  stream index, time base and start pts.
- ``csv``: ``index,pts,duration,key_frame,time`` with a header line.
"""

from __future__ import annotations

import csv
import fractions
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInputError, SourceUnreadableError
from .probe import choose_video_stream, open_container

if TYPE_CHECKING:
    import numpy as np

    from .reader import ProxyReader


FORMATS = ("torchcodec", "json", "csv")


@dataclass(frozen=True)
class FrameTable:
    """Every frame of one source video stream, in presentation order.

    ``pts`` and ``duration`` are in ``time_base`` units (the source stream's);
    ``key_frame`` is the demuxer's keyframe flag of the frame's packet.
    """

    source: Path
    stream_index: int
    time_base: fractions.Fraction
    start_pts: int
    pts: np.ndarray
    duration: np.ndarray
    key_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def times(self) -> np.ndarray:
        """Seconds from the source's start (the frame map's clock)."""
        import numpy as np

        return (self.pts - self.start_pts).astype(np.float64) * float(self.time_base)


def _packet_flags(source: Path, stream_number: int | None) -> tuple[int, dict[int, tuple[bool, int]]]:
    """(stream index, {pts: (keyframe flag, duration)}) of every video packet, demux only."""
    import av

    with open_container(source) as container:
        stream = choose_video_stream(container, source, stream_number)
        packets: dict[int, tuple[bool, int]] = {}
        try:
            for packet in container.demux(stream):
                pts = packet.pts if packet.pts is not None else packet.dts
                if packet.size and pts is not None:
                    packets[pts] = (bool(packet.is_keyframe), int(packet.duration or 0))
        except (av.error.InvalidDataError, av.error.EOFError, OSError):
            pass  # a damaged tail: the proxy holds only the frames before it too
        return stream.index, packets


def frame_table(reader: ProxyReader, source: str | Path | None = None) -> FrameTable:
    """The frame table of the source of ``reader`` (or of ``source``, which must be
    the file the proxy was made from): pts from the frame map, key flags from a
    demux of the source."""
    import numpy as np

    src = Path(source).expanduser().absolute() if source is not None else reader.metadata.source_path
    if src is None:
        raise BadInputError(reader.path, "the proxy does not name its source: give the source file")
    fm = reader.frame_map
    pts = np.array(fm.source_pts, dtype=np.int64)
    index, packets = _packet_flags(src, reader.metadata.settings.get("stream"))
    key = np.array([packets.get(int(p), (False, 0))[0] for p in pts], dtype=bool)
    if len(pts) and not key.any():
        raise SourceUnreadableError(src, "no packet of the source matches the proxy's frames (is this the proxy's source?)")
    duration = np.empty_like(pts)
    duration[:-1] = np.diff(pts)
    if len(pts):
        last = packets.get(int(pts[-1]), (False, 0))[1]
        duration[-1] = last if last > 0 else (duration[-2] if len(pts) > 1 else 0)
    return FrameTable(src, index, fm.header.source_time_base, fm.header.source_start_pts, pts, duration, key)


def _rows(table: FrameTable) -> list[dict[str, Any]]:
    times = table.times
    return [
        {"index": k, "pts": int(table.pts[k]), "duration": int(table.duration[k]), "key_frame": int(table.key_frame[k]), "time": round(float(times[k]), 9)}
        for k in range(len(table))
    ]


def format_frame_table(table: FrameTable, fmt: str) -> str:
    """``table`` as text in one of :data:`FORMATS`."""
    if fmt == "torchcodec":
        frames = [{"pts": int(p), "duration": int(d), "key_frame": int(k)} for p, d, k in zip(table.pts, table.duration, table.key_frame)]
        return json.dumps({"frames": frames}, separators=(",", ":")) + "\n"
    if fmt == "json":
        head = {"source": str(table.source), "stream_index": table.stream_index, "time_base": str(table.time_base), "start_pts": table.start_pts}
        return json.dumps({**head, "frames": _rows(table)}, separators=(",", ":")) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, ["index", "pts", "duration", "key_frame", "time"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(_rows(table))
        return out.getvalue()
    raise BadInputError(None, f"frame table format must be one of {', '.join(FORMATS)}, got {fmt!r}")
