"""Thumbnail tracks for other players, from the thumbnail sheets (:mod:`scrubproxy.thumbs`).

A track is one or more parts (a proxy's sheets placed at a time offset: one
part for a file, one per segment for a session's timeline). Every cue spans
exactly the times of the frames its tile stands for (from its frame's time to
the next tile's frame's time), written to the millisecond.

- WebVTT: ``<name>.vtt`` with cues ``<sheet>.jpg#xywh=x,y,w,h`` and the sheets beside it.
- BIF (Roku, Plex): ``<name>.bif``, one JPEG per tile, timestamps in ms.
- Jellyfin: ``<name>.trickplay/<width> - <cols>x<rows>/<n>.jpg`` (Jellyfin's
  own layout; it places tile ``i`` at ``i * interval``, so every tile must be a
  different frame: an interval shorter than a frame is refused).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg

from .errors import BadInputError
from .thumbs import ThumbSheets

BIF_MAGIC = bytes([0x89, 0x42, 0x49, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
TILE_QUALITY = 85


@dataclass(frozen=True)
class Part:
    """One proxy's thumbnails on a track: tile times are ``offset`` plus the proxy's frame times."""

    sheets: ThumbSheets
    times: np.ndarray
    offset: float = 0.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    part: int
    sheet: int
    x: int
    y: int
    w: int
    h: int
    frame: int  # proxy frame of the part's segment


def cues(parts: Sequence[Part]) -> Iterator[Cue]:
    """Every tile of the track in time order, with its exact time span."""
    for p, part in enumerate(parts):
        s = part.sheets
        for i in range(len(s)):
            start, end = s.span(i, part.times)
            n, x, y = s.place(i)
            yield Cue(part.offset + start, part.offset + end, p, n, x, y, s.tile_width, s.tile_height, int(s.frames[i]))


def vtt_stamp(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (WebVTT), rounded to the millisecond."""
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def vtt_text(parts: Sequence[Part], sheet_url: Callable[[int, int], str]) -> str:
    """A WebVTT thumbnail track; ``sheet_url(part, sheet)`` names each sheet."""
    lines = ["WEBVTT", ""]
    for c in cues(parts):
        lines += [f"{vtt_stamp(c.start)} --> {vtt_stamp(c.end)}", f"{sheet_url(c.part, c.sheet)}#xywh={c.x},{c.y},{c.w},{c.h}", ""]
    return "\n".join(lines)


def write_vtt(name: str, parts: Sequence[Part], out_dir: Path) -> list[Path]:
    """``<name>.vtt`` and its sheets ``<name>-<part>-<n>.jpg`` in ``out_dir``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p, part in enumerate(parts):
        for n in range(part.sheets.sheet_count):
            path = out_dir / f"{name}-{p}-{n}.jpg"
            path.write_bytes(part.sheets.sheet(n))
            written.append(path)
    vtt = out_dir / f"{name}.vtt"
    vtt.write_text(vtt_text(parts, lambda p, n: f"{name}-{p}-{n}.jpg"), encoding="utf-8")
    return [vtt, *written]


def _tiles(parts: Sequence[Part]) -> Iterator[tuple[Cue, np.ndarray]]:
    """Each cue with its tile's pixels (each sheet decoded once)."""
    decoded: tuple[int, int, np.ndarray] | None = None
    for c in cues(parts):
        if decoded is None or decoded[:2] != (c.part, c.sheet):
            decoded = (c.part, c.sheet, simplejpeg.decode_jpeg(parts[c.part].sheets.sheet(c.sheet), colorspace="RGB"))
        yield c, decoded[2][c.y : c.y + c.h, c.x : c.x + c.w]


def bif_bytes(parts: Sequence[Part]) -> bytes:
    """A BIF file: header, index of (ms, offset) ending in (0xFFFFFFFF, end), one JPEG per tile."""
    entries = [(round(c.start * 1000), simplejpeg.encode_jpeg(np.ascontiguousarray(px), quality=TILE_QUALITY, colorspace="RGB")) for c, px in _tiles(parts)]
    head = BIF_MAGIC + struct.pack("<III", 0, len(entries), 1) + b"\0" * 44
    offset = len(head) + 8 * (len(entries) + 1)
    index = bytearray()
    for ms, jpeg in entries:
        index += struct.pack("<II", ms, offset)
        offset += len(jpeg)
    index += struct.pack("<II", 0xFFFFFFFF, offset)
    return head + bytes(index) + b"".join(j for _, j in entries)


def write_bif(name: str, parts: Sequence[Part], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.bif"
    path.write_bytes(bif_bytes(parts))
    return [path]


def write_jellyfin(name: str, part: Part, out_dir: Path) -> list[Path]:
    """Jellyfin's trickplay folder for one file (``name`` is the file's name without its suffix)."""
    s = part.sheets
    expected = max(1, math.ceil(float(s.ends[-1]) / s.spec.interval - 1e-6)) if len(s) else 0
    if len(s) < expected:
        raise BadInputError(None, f"{name}: the interval {s.spec.interval} s is shorter than a frame; Jellyfin needs a different frame every interval")
    folder = out_dir / f"{name}.trickplay" / f"{s.tile_width} - {s.spec.cols}x{s.spec.rows}"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(s.sheet_count):
        path = folder / f"{n}.jpg"
        path.write_bytes(s.sheet(n))
        written.append(path)
    return written
