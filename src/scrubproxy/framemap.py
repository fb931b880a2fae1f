"""The frame map: proxy frame k -> source pts, proxy pts, byte offset and size of its JPEG.

A small versioned binary file, opened with a memory map (constant time, a
one-hour 60 fps segment included), so that a reader never parses the proxy's
container index and never guesses a frame from ``k / fps``.

It can grow while a recording is still being made: records are appended
after their JPEG bytes are in the proxy file, and only then does the
published count in the header move past them. A reader in another process
sees a consistent prefix (every record below the count it read is complete
and never changes) and picks up new frames with :meth:`FrameMap.refresh`; it
never infers the count from the file's size, which may hold half a record.

Layout (little-endian)::

    header, 88 bytes:
      magic b"SPFRAMES", version u32, flags u32 (bit 0: complete), published count u64,
      source time base (num i64, den i64), source start pts i64,
      proxy time base (num i64, den i64), proxy file size u64 (of the published frames' file),
      build id (16 bytes)
    records, 32 bytes each: source_pts i64, proxy_pts i64, offset u64, size u32, reserved u32
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
VERSION = 2
_HEADER = struct.Struct("<8sIIQqqqqqQ16s")
HEADER_SIZE = _HEADER.size  # 88
_COUNT_AT = struct.calcsize("<8sII")  # the published count: one aligned 8-byte write moves it
_FLAGS_AT = struct.calcsize("<8sI")
_PROXY_SIZE_AT = struct.calcsize("<8sIIQqqqqq")
FLAG_COMPLETE = 1
RECORD = np.dtype([("source_pts", "<i8"), ("proxy_pts", "<i8"), ("offset", "<u8"), ("size", "<u4"), ("reserved", "<u4")])

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
    complete: bool = True


def _pack_header(header: FrameMapHeader, count: int, complete: bool) -> bytes:
    return _HEADER.pack(
        MAGIC,
        VERSION,
        FLAG_COMPLETE if complete else 0,
        count,
        header.source_time_base.numerator,
        header.source_time_base.denominator,
        header.source_start_pts,
        header.proxy_time_base.numerator,
        header.proxy_time_base.denominator,
        header.proxy_size,
        header.build_id,
    )


def _records(source_pts: np.ndarray, proxy_pts: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> bytes:
    n = len(source_pts)
    if not (len(proxy_pts) == len(offsets) == len(sizes) == n):
        raise ValueError("frame map columns must all have the same length")
    rows = np.zeros(n, RECORD)
    rows["source_pts"], rows["proxy_pts"], rows["offset"], rows["size"] = source_pts, proxy_pts, offsets, sizes
    return rows.tobytes()


def published_count(path: Path) -> int | None:
    """The frames a (possibly growing) frame map has published, from its header
    alone; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
    except OSError:
        return None
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        return None
    return struct.unpack_from("<Q", head, _COUNT_AT)[0]


class FrameMapWriter:
    """Appends records to a frame map and publishes them (I/O: writes ``path``).

    The file is created exclusively with count 0; :meth:`append` writes
    records past the published ones, :meth:`publish` makes them visible, and
    :meth:`finish` marks the map complete, fsyncs and closes it.
    """

    def __init__(self, path: str | Path, header: FrameMapHeader) -> None:
        self.path = Path(path)
        self.header = header
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.written = 0
        self.published = 0
        os.pwrite(self._fd, _pack_header(header, 0, False), 0)

    def append(self, source_pts: np.ndarray, proxy_pts: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> None:
        data = _records(source_pts, proxy_pts, offsets, sizes)
        os.pwrite(self._fd, data, HEADER_SIZE + self.written * RECORD.itemsize)
        self.written += len(source_pts)

    def publish(self, proxy_size: int) -> None:
        """Make every appended record visible to readers. The JPEG bytes they
        point at must already be in the proxy file (``proxy_size`` long)."""
        os.pwrite(self._fd, struct.pack("<Q", proxy_size), _PROXY_SIZE_AT)
        os.pwrite(self._fd, struct.pack("<Q", self.written), _COUNT_AT)
        self.published = self.written

    def finish(self, proxy_size: int) -> None:
        """Publish everything, mark the map complete, fsync and close."""
        try:
            self.publish(proxy_size)
            os.pwrite(self._fd, struct.pack("<I", FLAG_COMPLETE), _FLAGS_AT)
            os.fsync(self._fd)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_frame_map(
    path: Path,
    header: FrameMapHeader,
    source_pts: np.ndarray,
    proxy_pts: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
) -> None:
    """Write a complete frame map in one go and fsync it (the caller renames it into place)."""
    if len(source_pts) != header.count:
        raise ValueError("frame map columns must all have header.count entries")
    writer = FrameMapWriter(path, header)
    try:
        writer.append(source_pts, proxy_pts, offsets, sizes)
    except BaseException:
        writer.close()
        raise
    writer.finish(header.proxy_size)


class FrameMap:
    """A memory-mapped frame map: the published records as numpy columns.

    Read-only and safe to share between threads; :meth:`refresh` (for a map
    that is still growing) must not race with other users of the columns.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise ProxyFormatError(self.path, f"cannot open frame map: {exc.strerror or exc}") from exc
        self._mmap: mmap.mmap | None = None
        try:
            head = os.pread(self._fd, HEADER_SIZE, 0)
            if len(head) < HEADER_SIZE:
                raise ProxyFormatError(self.path, "frame map is truncated")
            magic, version, flags, n, stb_n, stb_d, start, ptb_n, ptb_d, proxy_size, build_id = _HEADER.unpack(head)
            if magic != MAGIC:
                raise ProxyFormatError(self.path, "not a scrubproxy frame map")
            if version != VERSION:
                raise ProxyFormatError(self.path, f"frame map version {version}, this scrubproxy reads {VERSION}")
            if stb_d <= 0 or ptb_d <= 0:
                raise ProxyFormatError(self.path, "frame map is damaged")
            self.header = FrameMapHeader(
                n, fractions.Fraction(stb_n, stb_d), start, fractions.Fraction(ptb_n, ptb_d), proxy_size, build_id, bool(flags & FLAG_COMPLETE)
            )
            self._map(n)
        except BaseException:
            os.close(self._fd)
            raise
        if self.header.complete:  # it never changes again: no descriptor to keep
            os.close(self._fd)
            self._fd = -1

    def _map(self, n: int) -> None:
        needed = HEADER_SIZE + n * RECORD.itemsize
        size = os.fstat(self._fd).st_size
        if size < needed:
            raise ProxyFormatError(self.path, "frame map is truncated or damaged")
        old = self._mmap
        self._mmap = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
        rows = np.frombuffer(self._mmap, RECORD, n, HEADER_SIZE)
        self.source_pts = rows["source_pts"]
        self.proxy_pts = rows["proxy_pts"]
        self.offsets = rows["offset"]
        self.sizes = rows["size"]
        self._times: np.ndarray | None = None
        if old is not None:
            try:
                old.close()
            except BufferError:
                pass  # a caller still holds a view of the old map; it closes when collected

    def __len__(self) -> int:
        return self.header.count

    @property
    def complete(self) -> bool:
        """False while the map may still grow (a proxy of a recording being made)."""
        return self.header.complete

    def same_file(self) -> bool:
        """Does this map's path still name the file it opened (not deleted or
        replaced)? Always True for a complete map, which never changes."""
        if self._fd < 0:
            return True
        try:
            return os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except OSError:
            return False

    def refresh(self) -> int:
        """Pick up records published since the map was opened; returns the new count."""
        if self.header.complete:
            return self.header.count
        head = os.pread(self._fd, HEADER_SIZE, 0)
        _, _, flags, n, *_, proxy_size, _ = _HEADER.unpack(head)
        if n < self.header.count:
            raise ProxyFormatError(self.path, "frame map shrank: it was replaced")
        complete = bool(flags & FLAG_COMPLETE)
        if n != self.header.count or complete:
            self.header = FrameMapHeader(
                n, self.header.source_time_base, self.header.source_start_pts, self.header.proxy_time_base, proxy_size, self.header.build_id, complete
            )
            self._map(n)
        if complete:
            os.close(self._fd)
            self._fd = -1
        return n

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
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # a caller still holds a view; the map closes when it is collected
            self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FrameMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
