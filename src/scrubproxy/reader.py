"""``ProxyReader``: frame k of a proxy, as JPEG bytes or RGB pixels, in about a millisecond.

Frame k of the proxy is frame k of the source (the k-th in presentation
order). Every lookup goes through the frame map: ``jpeg(k)`` is a slice of the
memory-mapped proxy file, ``r[k]`` decodes that slice with libjpeg-turbo
(simplejpeg; measured 0.7 ms for 640x360 against 1.5 ms with PyAV's MJPEG
decoder and 2.6 ms with Pillow), and times come from the source pts recorded
at encode time, never from ``k / fps``. Read-only and safe to share between threads.

Batches (``get_frames_at``, ``get_frames_played_at``; the shape of torchcodec's
``VideoDecoder``) decode on a thread pool shared by all readers: simplejpeg
releases the GIL, so the JPEGs of one batch decode on every core at once.

The reader reads the manifest (``manifest.py``) and never writes anything:
recording a use is the cache's business (``ProxyCache.open``).
"""

from __future__ import annotations

import fractions
import itertools
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import simplejpeg

from .errors import ProxyFormatError, SourceUnreadableError
from .framemap import TIME_TOLERANCE, FrameMap
from .manifest import read_live_manifest, read_manifest
from .original import upright_rgb
from .owner import alive as owner_alive
from .sourceframes import decode_exact

#: The standard Huffman tables (JPEG spec, annex K.3) as one DHT segment: MJPEG
#: streams may leave them out ("AVI1"), standalone JPEG decoders need them.
STANDARD_DHT = bytes.fromhex(
    "ffc401a20000010501010101010100000000000000000102030405060708090a0b0100030101010101010101010000000000000102"
    "030405060708090a0b100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1"
    "c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768"
    "696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8"
    "c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa1100020102040403040705040400010277000102031104"
    "052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a43"
    "4445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5"
    "a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
)


#: Threads that decode one batch: the caller and one pool thread per other core.
_WORKERS = os.cpu_count() or 1
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """The JPEG decode pool every reader shares (helpers of the calling thread), made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, _WORKERS - 1), thread_name_prefix="scrubproxy-jpeg")
        return _pool


def complete_jpeg(data: bytes) -> bytes:
    """``data`` with the standard Huffman tables inserted after SOI when it has none.

    Neither marker can occur inside entropy-coded data (an 0xFF there is
    always followed by 0x00 or a restart marker), so plain searches suffice.
    """
    sos = data.find(b"\xff\xda")
    if sos < 0 or data.find(b"\xff\xc4", 0, sos) >= 0:
        return data
    return data[:2] + STANDARD_DHT + data[2:]


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """Several frames at once, as torchcodec's ``FrameBatch``: ``data`` (N, H, W, 3)
    uint8 RGB, and per frame its source time (``pts_seconds``), how long it
    stays on screen (``duration_seconds``) and its index (``indices``)."""

    data: np.ndarray
    pts_seconds: np.ndarray
    duration_seconds: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class ProxyMetadata:
    """What a proxy holds. ``average_rate`` is frames per second over the
    whole segment (measured from the frame map); ``begin_seconds`` is the
    first frame's time, ``end_seconds`` (= ``duration``, from the source's
    start) the end of the last frame, which lasts ``frame_duration`` (1 /
    ``average_rate``: the last frame has no successor to measure it by).
    The source facts (``source_codec``, ``source_width``, ``source_height``,
    ``rotation``) come from the manifest: ``None`` for a proxy without one."""

    width: int
    height: int
    frame_count: int
    average_rate: float
    duration: float
    source_path: Path | None
    settings: dict[str, Any]
    variable_rate: bool
    container: str
    partial: bool
    proxy_path: Path
    begin_seconds: float
    end_seconds: float
    frame_duration: float
    source_codec: str | None
    source_width: int | None
    source_height: int | None
    rotation: int | None

    def __repr__(self) -> str:
        vfr = "variable" if self.variable_rate else "constant"
        return (
            f"ProxyMetadata({self.width}x{self.height}, {self.frame_count} frames, {self.average_rate:.3f} fps {vfr}, "
            f"{self.duration:.3f} s, {self.container}, source={str(self.source_path)!r})"
        )


class ProxyReader:
    """Random access to the frames of one proxy.

    ``len(r)``, ``r[k]`` (RGB ``numpy.ndarray`` (H, W, 3) uint8; negative
    indices, slices and lists give a stacked (N, H, W, 3) array),
    ``r.jpeg(k)`` (a complete standalone JPEG), ``r.time_of(k)`` and
    ``r.index_at(t)`` (source time in seconds from the source's start).
    """

    def __init__(self, proxy_path: str | Path) -> None:
        self.path = Path(proxy_path)
        self.frame_map = FrameMap(self.path.with_suffix(".frames"))
        self._manifest = read_manifest(self.path.with_suffix(".json"))
        self._live = None if self._manifest is not None else read_live_manifest(self.path.with_suffix(".json"))
        self._refresh_lock = threading.Lock()
        try:
            self._data, size = self._map_proxy()
        except BaseException:
            self.frame_map.close()
            raise
        header = self.frame_map.header
        record = self._manifest or self._live
        # A growing proxy's file runs ahead of its published frames, never behind.
        fits = size == header.proxy_size if header.complete else size >= header.proxy_size
        if not fits or (record is not None and record.build_id != header.build_id.hex()):
            self.close()
            raise ProxyFormatError(self.path, "proxy and frame map do not belong together (rebuild the proxy)")
        self.metadata = self._metadata()

    def _map_proxy(self) -> tuple[mmap.mmap, int]:
        try:
            with open(self.path, "rb") as f:
                self._proxy_stat = os.fstat(f.fileno())
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), self._proxy_stat.st_size
        except (OSError, ValueError) as exc:
            raise ProxyFormatError(self.path, f"cannot open proxy: {getattr(exc, 'strerror', None) or exc}") from exc

    @property
    def live(self) -> bool:
        """Can this proxy still grow? True while its recording is being followed
        (frames are published as they arrive; :meth:`refresh` picks them up)."""
        if self.frame_map.complete or self._live is None:
            return False
        try:
            last_write = os.stat(self.frame_map.path).st_mtime
        except OSError:
            return False
        return owner_alive(self._live.owner, last_write)

    def refresh(self) -> int:
        """Pick up the frames published since this reader opened (or last
        refreshed) a live proxy; returns the new ``len``. Frames already there
        never change. Raises ProxyFormatError when the live proxy was dropped
        (its recording turned out to be another file) or replaced."""
        with self._refresh_lock:
            if self.frame_map.complete:
                return len(self)
            try:
                same = self.frame_map.same_file() and os.path.samestat(os.stat(self.path), self._proxy_stat)
            except OSError:
                same = False
            if not same:
                raise ProxyFormatError(self.path, "the live proxy was dropped or replaced: open it again")
            before = len(self)
            n = self.frame_map.refresh()  # records first: the JPEGs they name are in the file already
            if n != before or self.frame_map.complete:
                if n and int(self.frame_map.offsets[-1]) + int(self.frame_map.sizes[-1]) > len(self._data):
                    self._data = self._map_proxy()[0]  # the old map stays valid for readers holding it
                if self.frame_map.complete:
                    self._manifest = read_manifest(self.path.with_suffix(".json"))
                self.metadata = self._metadata()
            return n

    def _metadata(self) -> ProxyMetadata:
        """From the manifest (or the live record) where there is one; else (a
        proxy made outside the cache) the frame map and the first JPEG's header
        tell what they can."""
        manifest, live = self._manifest, self._live
        fm = self.frame_map
        n = len(fm)
        if manifest is not None:
            width, height = manifest.proxy.width, manifest.proxy.height
        elif live is not None:
            width, height = live.width, live.height
        elif n:
            height, width = simplejpeg.decode_jpeg_header(self.jpeg(0))[:2]
        else:
            width = height = 0
        span = float(fm.times[-1] - fm.times[0]) if n > 1 else 0.0
        rate = (n - 1) / span if span > 0 else 0.0
        frame_duration = 1.0 / rate if rate else 0.0
        end = float(fm.times[-1]) + frame_duration if n else 0.0
        video = manifest.source_video if manifest is not None else None
        return ProxyMetadata(
            width=int(width),
            height=int(height),
            frame_count=n,
            average_rate=rate,
            duration=end,
            source_path=Path(manifest.source.path) if manifest is not None else Path(live.source_path) if live is not None else None,
            settings=dict(manifest.settings) if manifest is not None else dict(live.settings) if live is not None else {},
            variable_rate=video.variable_rate if video is not None else self.path.suffix == ".mkv",
            container=self.path.suffix.lstrip("."),
            partial=manifest.partial if manifest is not None else False,
            proxy_path=self.path,
            begin_seconds=float(fm.times[0]) if n else 0.0,
            end_seconds=end,
            frame_duration=frame_duration,
            source_codec=video.codec if video is not None else None,
            source_width=video.width if video is not None else None,
            source_height=video.height if video is not None else None,
            rotation=video.rotation if video is not None else None,
        )

    # -- frames -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frame_map)

    def _index(self, k: int) -> int:
        n = len(self.frame_map)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
            raise TypeError(f"frame index must be an integer, got {type(k).__name__}")
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"frame {k} out of range: {self.path.name} has {n} frames")
        return int(k)

    def jpeg(self, k: int) -> bytes:
        """Frame ``k`` as the bytes of a complete JPEG (decodable on its own)."""
        k = self._index(k)
        offset = int(self.frame_map.offsets[k])
        return complete_jpeg(self._data[offset : offset + int(self.frame_map.sizes[k])])

    def _pixels(self, k: int, out: np.ndarray | None = None) -> np.ndarray:
        return simplejpeg.decode_jpeg(self.jpeg(k), colorspace="RGB", buffer=out)

    def _indices(self, indices: Any) -> np.ndarray:
        """``indices`` as an int64 array in range (negative ones counted from the end)."""
        arr = np.asarray(indices)
        if arr.ndim != 1 and arr.size:
            raise TypeError(f"frame indices must be a sequence of integers, got shape {arr.shape}")
        if arr.size == 0:
            return np.empty(0, np.int64)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got {arr.dtype}")
        n = len(self)
        arr = np.where(arr < 0, arr + n, arr).astype(np.int64)
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            raise IndexError(f"frame {int(np.asarray(indices)[bad.argmax()])} out of range: {self.path.name} has {n} frames")
        return arr

    def _decode_many(self, indices: np.ndarray) -> np.ndarray:
        """Frames ``indices`` (in range) as (N, H, W, 3), each distinct frame decoded once.

        The calling thread and up to one pool thread per other core take the
        next frame from a shared counter until none is left: the caller never
        waits for a helper to start (on a busy machine it may do all the work),
        and helpers that had not started by the end are cancelled.
        """
        unique, inverse = np.unique(indices, return_inverse=True)
        out = np.empty((len(unique), self.metadata.height, self.metadata.width, 3), np.uint8)
        claim = itertools.count()  # next() on it is atomic under the GIL

        def drain() -> None:
            while (j := next(claim)) < len(unique):
                self._pixels(int(unique[j]), out[j])

        pool = _decode_pool()
        helpers = [pool.submit(drain) for _ in range(min(_WORKERS - 1, len(unique) - 1))]
        drain()
        for helper in helpers:
            if not helper.cancel():
                helper.result()
        return out if len(unique) == len(indices) and np.array_equal(unique, indices) else out[inverse.reshape(-1)]

    def get_frames_at(self, indices: Any) -> FrameBatch:
        """Frames ``indices`` (any order, repeats allowed, negative counted from
        the end) as a :class:`FrameBatch`; decoded in parallel, faster per frame
        than ``r[k]`` one by one. ``duration_seconds`` of frame k is
        ``time_of(k+1) - time_of(k)``; the last frame's is the metadata's
        ``frame_duration``."""
        idx = self._indices(indices)
        times = self.frame_map.times
        following = np.append(times[1:], times[-1] + self.metadata.frame_duration) if len(self) else times
        return FrameBatch(
            data=self._decode_many(idx),
            pts_seconds=times[idx].astype(np.float64),
            duration_seconds=(following[idx] - times[idx]).astype(np.float64),
            indices=idx,
        )

    def get_frames_played_at(self, seconds: Any) -> FrameBatch:
        """The frames on screen at source times ``seconds`` (see :meth:`index_at`).
        As torchcodec: IndexError for a time outside [begin_seconds, end_seconds)."""
        t = np.asarray(seconds, dtype=np.float64).reshape(-1)
        m = self.metadata
        outside = (t < m.begin_seconds - TIME_TOLERANCE) | (t >= m.end_seconds) if len(self) else np.ones(t.shape, bool)
        if outside.any():
            raise IndexError(f"time {float(t[outside.argmax()])} s is outside {self.path.name}'s [{m.begin_seconds}, {m.end_seconds}) s")
        return self.get_frames_at(self.frame_map.index_at(t))

    @overload
    def __getitem__(self, key: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, key: slice | list[int] | np.ndarray) -> np.ndarray: ...

    def __getitem__(self, key: Any) -> np.ndarray:
        """RGB pixels of frame ``key`` (H, W, 3), or of several frames (N, H, W, 3)."""
        if isinstance(key, slice):
            indices = range(*key.indices(len(self)))
        elif isinstance(key, (list, tuple, np.ndarray)):
            indices = [self._index(int(i)) if isinstance(i, (int, np.integer)) else self._index(i) for i in key]
        else:
            return self._pixels(self._index(key))
        if len(indices) == 0:
            return np.empty((0, self.metadata.height, self.metadata.width, 3), np.uint8)
        return self._decode_many(np.asarray(indices, np.int64))

    def __iter__(self):
        for k in range(len(self)):
            yield self._pixels(k)

    def original(self, k: int) -> np.ndarray:
        """Source frame ``k`` itself: full resolution, upright RGB (H, W, 3) uint8,
        decoded exactly from the source by its pts (opens it and decodes a GOP:
        tens of milliseconds, not one). SourceUnreadableError when the source is gone."""
        pts = self.pts_of(k)
        source = self.metadata.source_path
        if source is None or not source.is_file():
            raise SourceUnreadableError(source or self.path, "the source of this proxy is gone (moved or deleted?)")
        return upright_rgb(decode_exact(source, pts, self.metadata.settings.get("stream")))

    # -- time ---------------------------------------------------------------------

    def time_of(self, k: int) -> float:
        """Source time of frame ``k`` in seconds from the source's start (its pts, exact)."""
        return self.frame_map.time_of(self._index(k))

    @overload
    def index_at(self, t: float) -> int: ...
    @overload
    def index_at(self, t: np.ndarray) -> np.ndarray: ...

    def index_at(self, t: Any) -> Any:
        """The frame shown at source time ``t``: the last frame whose time <= t
        (frame 0 before the first). An array of times gives an array of indices."""
        if len(self) == 0:
            raise IndexError(f"{self.path.name} has no frames")
        return self.frame_map.index_at(t)

    def pts_of(self, k: int) -> int:
        """Source pts of frame ``k``, in the source stream's time base."""
        return int(self.frame_map.source_pts[self._index(k)])

    @property
    def source_time_base(self) -> fractions.Fraction:
        return self.frame_map.header.source_time_base

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        data = getattr(self, "_data", None)
        if data is not None:
            data.close()
            self._data = None  # type: ignore[assignment]
        self.frame_map.close()

    def __enter__(self) -> "ProxyReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProxyReader({str(self.path)!r}, {len(self)} frames)"

