"""The frame map: proxy frame k -> source pts, proxy pts, byte offset and size of its JPEG.

A small versioned binary file, opened with a memory map (constant time, a
one-hour 60 fps segment included), so that a reader never parses the proxy's
container index and never guesses a frame from ``k / fps``.

Layout (little-endian)::

    header, 96 bytes:
      magic b"SPFRAMES", version u32, reserved u32, count u64,
      source time base (num i64, den i64), source start pts i64,
      proxy time base (num i64, den i64), proxy file size u64,
      build id (16 bytes)
    columns, each ``count`` long: source_pts i64, proxy_pts i64,
      offset u64, size u32 (then zero padding to 8 bytes)
"""

from __future__ import annotations

import fractions
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from .errors import ProxyFormatError

MAGIC = b"SPFRAMES"
VERSION = 1
_HEADER = struct.Struct("<8sIIQqqqqqQ16s")
HEADER_SIZE = _HEADER.size  # 96

#: Times closer than this to a frame's own time count as that frame's time.
TIME_TOLERANCE = 1e-6


@dataclass(frozen=True)
class FrameMapHeader:
    count: int
    source_time_base: fractions.Fraction
    source_start_pts: int
    proxy_time_base: fractions.Fraction
    proxy_size: int
    build_id: bytes


def _column_bytes(count: int, itemsize: int) -> int:
    return (count * itemsize + 7) // 8 * 8


def write_frame_map(
    path: Path,
    header: FrameMapHeader,
    source_pts: np.ndarray,
    proxy_pts: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
) -> None:
    """Write a frame map file and fsync it (the caller renames it into place)."""
    n = header.count
    if not (len(source_pts) == len(proxy_pts) == len(offsets) == len(sizes) == n):
        raise ValueError("frame map columns must all have header.count entries")
    head = _HEADER.pack(
        MAGIC,
        VERSION,
        0,
        n,
        header.source_time_base.numerator,
        header.source_time_base.denominator,
        header.source_start_pts,
        header.proxy_time_base.numerator,
        header.proxy_time_base.denominator,
        header.proxy_size,
        header.build_id,
    )
    with open(path, "wb") as f:
        f.write(head)
        for column, dtype in ((source_pts, "<i8"), (proxy_pts, "<i8"), (offsets, "<u8"), (sizes, "<u4")):
            data = np.ascontiguousarray(column, dtype=dtype).tobytes()
            f.write(data)
            f.write(b"\0" * (_column_bytes(n, np.dtype(dtype).itemsize) - len(data)))
        f.flush()
        os.fsync(f.fileno())


class FrameMap:
    """A memory-mapped frame map. Read-only, safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < HEADER_SIZE:
                    raise ProxyFormatError(self.path, "frame map is truncated")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise ProxyFormatError(self.path, f"cannot open frame map: {exc.strerror or exc}") from exc
        fields = _HEADER.unpack_from(self._mmap, 0)
        magic, version, _, n, stb_n, stb_d, start, ptb_n, ptb_d, proxy_size, build_id = fields
        if magic != MAGIC:
            raise ProxyFormatError(self.path, "not a scrubproxy frame map")
        if version != VERSION:
            raise ProxyFormatError(self.path, f"frame map version {version}, this scrubproxy reads {VERSION}")
        expected = HEADER_SIZE + 3 * _column_bytes(n, 8) + _column_bytes(n, 4)
        if size != expected or stb_d <= 0 or ptb_d <= 0:
            raise ProxyFormatError(self.path, "frame map is truncated or damaged")
        self.header = FrameMapHeader(
            n, fractions.Fraction(stb_n, stb_d), start, fractions.Fraction(ptb_n, ptb_d), proxy_size, build_id
        )
        col = _column_bytes(n, 8)
        self.source_pts = np.frombuffer(self._mmap, "<i8", n, HEADER_SIZE)
        self.proxy_pts = np.frombuffer(self._mmap, "<i8", n, HEADER_SIZE + col)
        self.offsets = np.frombuffer(self._mmap, "<u8", n, HEADER_SIZE + 2 * col)
        self.sizes = np.frombuffer(self._mmap, "<u4", n, HEADER_SIZE + 3 * col)
        self._times: np.ndarray | None = None

    def __len__(self) -> int:
        return self.header.count

    @property
    def times(self) -> np.ndarray:
        """Source time of every frame in seconds from the source's start (computed once)."""
        if self._times is None:
            tb = self.header.source_time_base
            rel = self.source_pts - self.header.source_start_pts
            self._times = rel.astype(np.float64) * (tb.numerator / tb.denominator)
        return self._times

    def time_of(self, k: int) -> float:
        """Source time of frame ``k`` (seconds from the source's start)."""
        return float(self.times[k])

    @overload
    def index_at(self, t: float) -> int: ...
    @overload
    def index_at(self, t: np.ndarray) -> np.ndarray: ...

    def index_at(self, t: Any) -> Any:
        """The frame on screen at source time ``t``: the last one whose time <= t.

        Times before the first frame give frame 0 (what a player shows there).
        An array of times gives an int64 array of indices, a scalar an int.
        """
        k = np.searchsorted(self.times, np.asarray(t, dtype=np.float64) + TIME_TOLERANCE, side="right") - 1
        k = np.maximum(k, 0)
        return int(k) if k.ndim == 0 else k.astype(np.int64)

    def close(self) -> None:
        # numpy views keep the buffer exported; drop them before closing the map.
        self.source_pts = self.proxy_pts = self.offsets = self.sizes = None  # type: ignore[assignment]
        self._times = None
        try:
            self._mmap.close()
        except BufferError:
            pass  # a caller still holds a view; the map closes when it is collected

    def __enter__(self) -> "FrameMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
