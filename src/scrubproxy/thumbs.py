"""Thumbnail sheets (trickplay) of a proxy: tiles of known frames, stored beside the proxy.

Tile ``i`` shows proxy frame ``frames[i]``: the frame on screen at source time
``i * interval`` (through the frame map, never ``k / fps``; repeats dropped, so
a tile never stands for no frame). It stands for the frames up to the next
tile's, and its time span is theirs: from its frame's time to the next tile's
frame's time (the last one to the end of the segment).

Tiles are laid out row by row on sheets of ``cols x rows`` (JPEG). All sheets
of one proxy and one spec live in one file, ``<key>.w<width>i<ms>.thumbs``,
beside the proxy: a JSON header (build id, tile size, frames, sheet
offsets) and the sheets. Written to a temporary file and renamed, like the
proxy; bound to the proxy's build id (a rebuilt proxy makes them again); the
cache lists, budgets and removes them with the proxy (its file-name patterns
include them).

Made from the proxy, not the source: a sheet decodes one small JPEG per tile
(libjpeg-turbo scales by 1/2, 1/4 or 1/8 while decoding), so an hour of proxy
takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import simplejpeg

from .errors import BadInputError, ProxyFormatError
from .framemap import TIME_TOLERANCE
from .reader import ProxyReader

MAGIC = b"SPTHUMB1"
_HEAD = struct.Struct("<8sI")
SHEET_QUALITY = 80
#: Sheets made at once (libjpeg-turbo releases the GIL while it works).
WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThumbSpec:
    """How thumbnails are cut: one tile per ``interval`` seconds, ``width`` pixels wide,
    ``cols x rows`` tiles to a sheet."""

    interval: float = 1.0
    width: int = 160
    cols: int = 10
    rows: int = 10

    def __post_init__(self) -> None:
        if not (isinstance(self.interval, (int, float)) and math.isfinite(self.interval) and 0.001 <= self.interval <= 3600):
            raise BadInputError(None, f"thumbnail interval must be 0.001 to 3600 seconds, got {self.interval}")
        if not (isinstance(self.width, int) and 16 <= self.width <= 1920):
            raise BadInputError(None, f"thumbnail width must be 16 to 1920 pixels, got {self.width}")
        if not (1 <= self.cols <= 64 and 1 <= self.rows <= 64):
            raise BadInputError(None, f"a sheet must be 1 to 64 tiles each way, got {self.cols}x{self.rows}")

    @property
    def tag(self) -> str:
        """What tells this spec's file from another's: ``w160i1000`` (interval in ms)."""
        return f"w{self.width}i{round(self.interval * 1000)}c{self.cols}r{self.rows}"


def thumbs_path(proxy_path: Path, spec: ThumbSpec) -> Path:
    """Where the thumbnails of ``proxy_path`` cut by ``spec`` are kept."""
    return proxy_path.with_name(f"{proxy_path.stem}.{spec.tag}.thumbs")


def tile_frames(times: np.ndarray, duration: float, interval: float) -> np.ndarray:
    """Frame of each tile: the one on screen at ``0, interval, 2 interval, ...`` (repeats dropped)."""
    if len(times) == 0:
        return np.zeros(0, np.int64)
    count = max(1, math.ceil(duration / interval - TIME_TOLERANCE))
    wanted = np.arange(count, dtype=np.float64) * interval
    frames = np.searchsorted(times, wanted + TIME_TOLERANCE, side="right") - 1
    return np.unique(np.clip(frames, 0, len(times) - 1)).astype(np.int64)


def tile_size(width: int, height: int, tile_width: int) -> tuple[int, int]:
    """(width, height) of a tile ``tile_width`` wide with the proxy's aspect (even height)."""
    tile_width = min(tile_width, width) // 2 * 2
    return tile_width, max(2, round(tile_width * height / width / 2) * 2)


def _tile(jpeg: bytes, w: int, h: int) -> np.ndarray:
    rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", fastdct=True, fastupsample=True, min_height=h, min_width=w)
    if rgb.shape[:2] == (h, w):
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=w, height=h, interpolation="AREA").to_ndarray()


class ThumbSheets:
    """The thumbnails of one proxy: which frame each tile shows, where it is, the sheets' JPEGs.

    Read-only, safe to share between threads; ``close`` when done.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ProxyFormatError(path, f"cannot open thumbnails: {getattr(exc, 'strerror', None) or exc}") from exc
        try:
            magic, size = _HEAD.unpack_from(self._data, 0)
            if magic != MAGIC:
                raise ValueError("not a thumbnail file")
            head = json.loads(self._data[_HEAD.size : _HEAD.size + size])
            self.build_id: str = head["build_id"]
            self.spec = ThumbSpec(head["interval"], head["width"], head["cols"], head["rows"])
            self.tile_width: int = head["tile_width"]
            self.tile_height: int = head["tile_height"]
            self.frames = np.asarray(head["frames"], np.int64)
            self.ends = np.asarray(head["ends"], np.float64)
            self._sheets: list[tuple[int, int]] = [tuple(s) for s in head["sheets"]]
            if self._sheets and self._sheets[-1][0] + self._sheets[-1][1] > len(self._data):
                raise ValueError("truncated")
        except (ValueError, KeyError, TypeError, struct.error, BadInputError) as exc:
            self.close()
            raise ProxyFormatError(path, f"thumbnail file is damaged ({exc})") from None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def sheet_count(self) -> int:
        return len(self._sheets)

    def sheet(self, n: int) -> bytes:
        """JPEG of sheet ``n`` (IndexError outside 0 to sheet_count - 1)."""
        if not 0 <= n < len(self._sheets):
            raise IndexError(f"sheet {n} out of range: there are {len(self._sheets)}")
        offset, size = self._sheets[n]
        return self._data[offset : offset + size]

    def place(self, i: int) -> tuple[int, int, int]:
        """(sheet, x, y) of tile ``i``, in pixels of the sheet."""
        per = self.spec.cols * self.spec.rows
        n, r = divmod(int(i), per)
        row, col = divmod(r, self.spec.cols)
        return n, col * self.tile_width, row * self.tile_height

    def span(self, i: int, times: np.ndarray) -> tuple[float, float]:
        """Source times (start, end) of the frames tile ``i`` stands for."""
        return float(times[self.frames[i]]), float(self.ends[i])

    def tile_at(self, frame: int) -> int:
        """The tile standing for proxy frame ``frame`` (the last tile at or before it)."""
        return max(int(np.searchsorted(self.frames, frame, side="right")) - 1, 0)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: tile size, layout, and the frame of each tile."""
        return {
            "interval": self.spec.interval,
            "tile_width": self.tile_width,
            "tile_height": self.tile_height,
            "cols": self.spec.cols,
            "rows": self.spec.rows,
            "sheets": self.sheet_count,
            "frames": self.frames.tolist(),
        }

    def close(self) -> None:
        data = getattr(self, "_data", None)
        if data is not None:
            data.close()
            self._data = None  # type: ignore[assignment]

    def __enter__(self) -> "ThumbSheets":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(frames: np.ndarray, per: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), per):
        yield frames[start : start + per]


def make_thumbs(reader: ProxyReader, spec: ThumbSpec) -> Path:
    """Cut the thumbnails of ``reader``'s proxy and publish them beside it; returns the file."""
    meta = reader.metadata
    times = reader.frame_map.times
    frames = tile_frames(times, meta.duration, spec.interval)
    tw, th = tile_size(meta.width, meta.height, spec.width)
    ends = np.append(times[frames[1:]], meta.duration) if len(frames) else np.zeros(0)
    per = spec.cols * spec.rows

    def sheet(chunk: np.ndarray) -> bytes:
        rows = -(-len(chunk) // spec.cols)
        pixels = np.zeros((rows * th, spec.cols * tw, 3), np.uint8)
        for j, k in enumerate(chunk):
            row, col = divmod(j, spec.cols)
            pixels[row * th : (row + 1) * th, col * tw : (col + 1) * tw] = _tile(reader.jpeg(int(k)), tw, th)
        return simplejpeg.encode_jpeg(pixels, quality=SHEET_QUALITY, colorspace="RGB", colorsubsampling="420")

    with ThreadPoolExecutor(WORKERS) as pool:
        sheets = list(pool.map(sheet, _chunks(frames, per)))
    final = thumbs_path(reader.path, spec)
    head: dict[str, Any] = {
        "build_id": reader.frame_map.header.build_id.hex(),
        "interval": spec.interval,
        "width": spec.width,
        "cols": spec.cols,
        "rows": spec.rows,
        "tile_width": tw,
        "tile_height": th,
        "frames": frames.tolist(),
        "ends": ends.tolist(),
        "sheets": [],
    }
    # The offsets depend on the header's length, which depends on the offsets' digits: settle it.
    start = 0
    while True:
        offsets, pos = [], start
        for s in sheets:
            offsets.append([pos, len(s)])
            pos += len(s)
        head["sheets"] = offsets
        blob = json.dumps(head, separators=(",", ":")).encode()
        begin = _HEAD.size + len(blob)
        if begin == start:
            break
        start = begin
    # The temporary name is one the cache knows (a leftover is removed after an hour unchanged).
    fd, temp = tempfile.mkstemp(prefix=f".{reader.path.stem}.", suffix=".tmp.thumbs", dir=final.parent)
    try:
        with open(fd, "wb") as f:
            f.write(_HEAD.pack(MAGIC, len(blob)))
            f.write(blob)
            for s in sheets:
                f.write(s)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return final


def open_thumbs(reader: ProxyReader, spec: ThumbSpec | None = None) -> ThumbSheets:
    """The thumbnails of ``reader``'s proxy, cut now when missing, damaged or of another build."""
    spec = spec or ThumbSpec()
    path = thumbs_path(reader.path, spec)
    build_id = reader.frame_map.header.build_id.hex()
    with contextlib.suppress(ProxyFormatError):
        sheets = ThumbSheets(path)
        if sheets.build_id == build_id and sheets.spec == spec:
            return sheets
        sheets.close()
    try:
        return ThumbSheets(make_thumbs(reader, spec))
    except OSError as exc:
        raise ProxyFormatError(path, f"cannot write thumbnails: {exc.strerror or exc}") from exc
