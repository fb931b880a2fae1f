"""The proxy file: compressed JPEGs in Matroska, and the frame map that locates them.

Every proxy is Matroska, whoever asks for it (the player, the server, the CLI),
so that no consumer re-encodes another's proxy. Matroska against AVI on the
same 10 s 1080p60 H.264 source (600 frames, 360p proxies; 2 loaded cores, three
alternating encodes each, then 100 random exact seeks in mpv 0.35, two rounds):

- encode: AVI 9.3 / 5.5 / 3.1 s, Matroska 6.9 / 4.7 / 2.7 s (no slower: the
  muxer is a sliver of the work, MJPEG packets are written as they are);
- size: 17,597,406 against 17,590,894 bytes (+0.04 %, block headers and cues);
- mpv seek median 2.9 / 3.5 ms (p95 7.3 / 4.0) against AVI's 3.7 / 3.7 ms
  (p95 9.6 / 10.9); every seek showed the right frame on both.

Matroska also carries the source's timestamps (variable-rate sources keep
their timing), lets each mpv EDL part after the first start 0.5 ms before its
first frame (an AVI proxy, first frame at 0, cannot: mpv showed frame k+1 for
k), and can be read while it is being written.

:class:`ProxyWriter` writes both files in batches with :mod:`.mkvwriter`,
which knows where each JPEG lands: the frame map is written as the proxy is,
with no second pass over the finished file, and a proxy of a recording still
being made publishes its frames a batch at a time (see :mod:`.framemap`).
"""

from __future__ import annotations

import contextlib
import fractions
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EncodeError
from .mkvwriter import MAX_CLUSTER_SPAN_MS, MatroskaWriter

if TYPE_CHECKING:  # the heavy imports wait until a proxy is written: a cache hit needs only the names here
    import numpy as np

    from .convert import ProxyGeometry
    from .probe import SourceInfo

#: The proxy's container, as its file suffix names it.
PROXY_CONTAINER = "mkv"

#: Matroska's default timestamp unit; the proxy's own pts are in it.
PROXY_TIME_BASE = fractions.Fraction(1, 1000)

#: A batch is written once it holds this many JPEG bytes (bounded memory for
#: encodes; a live proxy publishes more often, see :mod:`.live`).
BATCH_BYTES = 1 << 20


class ProxyWriter:
    """A proxy and its frame map being written (I/O: creates both files, exclusively).

    :meth:`add` buffers a frame; :meth:`publish` appends the buffered frames
    as one Matroska cluster, then their frame-map records, then moves the
    published count past them; :meth:`finish` writes the proxy's index and
    marks the map complete (fsynced); :meth:`abort` deletes both files.
    """

    def __init__(self, proxy_path: Path, frames_path: Path, info: SourceInfo, geometry: ProxyGeometry, build_id: bytes) -> None:
        from .framemap import FrameMapHeader, FrameMapWriter

        self.proxy_path, self.frames_path = proxy_path, frames_path
        self.info = info
        self.geometry = geometry
        self.build_id = build_id
        self._mkv = MatroskaWriter(proxy_path, geometry.width, geometry.height)
        try:
            header = FrameMapHeader(0, info.video.time_base, info.video.start_pts, PROXY_TIME_BASE, 0, build_id, complete=False)
            self._map = FrameMapWriter(frames_path, header)
        except BaseException:
            self._mkv.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(proxy_path)
            raise
        self._tb_ratio = info.video.time_base / PROXY_TIME_BASE
        self._batch: list[tuple[int, bytes, int]] = []  # (proxy pts, jpeg, source pts)
        self._batch_bytes = 0
        self._last_pts: int | None = None
        self._previous_pts: int | None = None
        self.published = 0

    def add(self, source_pts: int, jpeg: bytes) -> None:
        """Buffer the next frame (presentation order). Its proxy pts is its source
        time from the source's start, in ms, kept strictly increasing so that no
        two frames merge."""
        pts = round((source_pts - self.info.video.start_pts) * self._tb_ratio)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        if self._batch and (pts - self._batch[0][0] > MAX_CLUSTER_SPAN_MS or self._batch_bytes >= BATCH_BYTES):
            self.publish()
        self._previous_pts, self._last_pts = self._last_pts, pts
        self._batch.append((pts, jpeg, source_pts))
        self._batch_bytes += len(jpeg)

    @property
    def pending(self) -> int:
        """Frames added but not yet published."""
        return len(self._batch)

    def publish(self) -> int:
        """Write the buffered frames and make them visible; returns the frames published so far."""
        import numpy as np

        if self._batch:
            located = self._mkv.write_cluster([(pts, jpeg) for pts, jpeg, _ in self._batch])
            self._map.append(
                np.array([s for _, _, s in self._batch], np.int64),
                np.array([p for p, _, _ in self._batch], np.int64),
                np.array([o for o, _ in located], np.uint64),
                np.array([n for _, n in located], np.uint32),
            )
            self._batch.clear()
            self._batch_bytes = 0
            self._map.publish(self._mkv.size)
            self.published = self._map.published
        return self.published

    def finish(self) -> None:
        """Publish what is buffered, write the proxy's index (cues, duration) and
        mark the frame map complete; both files are fsynced and closed."""
        self.publish()
        if self._last_pts is None:
            last = 0
        elif self._previous_pts is not None:
            last = self._last_pts - self._previous_pts
        else:
            last = round(1000 / float(self.info.video.average_rate or 30))
        self._mkv.finish((self._last_pts or 0) + max(last, 1))
        self._map.finish(os.stat(self.proxy_path).st_size)

    def abort(self) -> None:
        """Close and delete both files."""
        self._mkv.close()
        self._map.close()
        for p in (self.proxy_path, self.frames_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def index_proxy(proxy_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, fractions.Fraction]:
    """Demux a finished proxy (no decode) and locate each JPEG in the file.

    Returns (proxy pts, byte offsets, sizes, proxy time base). The demuxer
    reports where each packet's element starts; the JPEG itself starts a few
    header bytes later (a Matroska block header, an AVI chunk header), found by
    matching the packet's bytes, so the offsets are right for any container.
    """
    import av
    import numpy as np

    pts_list: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    with open(proxy_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        with av.open(str(proxy_path)) as container:
            stream = container.streams.video[0]
            time_base = stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                body = bytes(packet)
                start = packet.pos if packet.pos is not None and packet.pos >= 0 else (offsets[-1] + sizes[-1] if offsets else 0)
                offset = data.find(body[:64], start, start + 64 + len(body[:64]) + 64)
                if offset < 0 or data[offset : offset + len(body)] != body:
                    raise EncodeError(proxy_path, f"cannot locate frame {len(offsets)} in the proxy file")
                pts_list.append(packet.pts if packet.pts is not None else len(pts_list))
                offsets.append(offset)
                sizes.append(len(body))
    return (
        np.asarray(pts_list, np.int64),
        np.asarray(offsets, np.uint64),
        np.asarray(sizes, np.uint32),
        time_base,
    )
