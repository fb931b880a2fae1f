"""A Matroska writer for MJPEG proxies that knows where every JPEG lands.

FFmpeg's Matroska muxer (through PyAV) buffers a whole cluster in memory and
says nothing about where a packet's bytes end up, so a finished proxy had to
be demuxed a second time to find its frames, and a proxy that grows while a
recording is made could not publish a frame until the muxer chose to flush.
This writer does only what an all-intra single-track proxy needs, and it
appends: each :meth:`write_cluster` call puts one complete cluster (its size
known up front) at the end of the file with a single ``write`` and returns the
byte offset and size of every JPEG in it, so the frame map is written from
what the writer knows, and a reader in another process can trust every
frame whose frame-map record is published.

Layout::

    EBML header
    Segment (size unknown while growing, patched by finish())
      Void            reserved for the SeekHead, written by finish()
      Info            TimestampScale 1 ms, apps, Void reserved for Duration
      Tracks          one V_MJPEG track, BT.601 full range
      Cluster ...     Timestamp + SimpleBlocks (every frame a keyframe)
      Cues            added by finish(): one cue per frame, as FFmpeg writes
                      for all-intra video, so players seek straight to any frame

A file that is never finished (a crash while growing) is still a valid
Matroska stream of unknown size that FFmpeg and mpv read to its last cluster.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_SEEK_HEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
_INFO, _TIMESTAMP_SCALE, _DURATION, _MUXING_APP, _WRITING_APP = 0x1549A966, 0x2AD7B1, 0x4489, 0x4D80, 0x5741
_TRACKS, _TRACK_ENTRY = 0x1654AE6B, 0xAE
_CLUSTER, _TIMESTAMP, _SIMPLE_BLOCK = 0x1F43B675, 0xE7, 0xA3
_CUES, _CUE_POINT, _CUE_TIME, _CUE_TRACK_POSITIONS, _CUE_TRACK, _CUE_CLUSTER_POSITION, _CUE_RELATIVE_POSITION = (
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1, 0xF0,
)
_VOID = 0xEC
_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"

#: Bytes reserved at the start of the segment for the SeekHead (three entries need 51).
_SEEK_HEAD_ROOM = 96
#: A Duration element: 2-byte id, 1-byte size, 8-byte float.
_DURATION_ROOM = 11
#: A SimpleBlock's timestamp is a signed 16-bit offset from its cluster's (ms).
MAX_CLUSTER_SPAN_MS = 30_000


def _id(element: int) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big")


def _vint(n: int, length: int | None = None) -> bytes:
    """An EBML size: the shortest that holds ``n`` (all-ones is reserved for 'unknown')."""
    if length is None:
        length = 1
        while n >= (1 << (7 * length)) - 1:
            length += 1
    return ((1 << (7 * length)) | n).to_bytes(length, "big")


def _element(element: int, payload: bytes) -> bytes:
    return _id(element) + _vint(len(payload)) + payload


def _uint(element: int, value: int) -> bytes:
    return _element(element, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _void(total: int) -> bytes:
    """A Void element exactly ``total`` bytes long (at least 9): an 8-byte size
    lets any room be filled."""
    return bytes([_VOID]) + _vint(total - 9, 8) + b"\0" * (total - 9)


class MatroskaWriter:
    """Appends MJPEG frames to a Matroska file, a cluster at a time.

    Times are integers in milliseconds (the proxy's time base). The file is
    created (``exclusive``: never overwrites) and written from this process
    only; readers may map it while it grows.
    """

    def __init__(self, path: str | Path, width: int, height: int, app: str = "scrubproxy") -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self._write_header(width, height, app)
        except BaseException:
            os.close(self._fd)
            raise
        self._cues: list[tuple[int, int, int]] = []  # (time, cluster position, position in cluster)
        self._last_time: int | None = None

    def _write_header(self, width: int, height: int, app: str) -> None:
        ebml = _element(
            _EBML,
            _uint(0x4286, 1) + _uint(0x42F7, 1) + _uint(0x42F2, 4) + _uint(0x42F3, 8)
            + _element(0x4282, b"matroska") + _uint(0x4287, 4) + _uint(0x4285, 2),
        )
        head = ebml + _id(_SEGMENT) + _UNKNOWN_SIZE
        self._segment_start = len(head)
        seek_room = _void(_SEEK_HEAD_ROOM)
        info_payload = _uint(_TIMESTAMP_SCALE, 1_000_000) + _element(_MUXING_APP, app.encode()) + _element(_WRITING_APP, app.encode())
        info = _element(_INFO, info_payload + _void(_DURATION_ROOM))
        # Duration goes where the Void closing Info is: the last _DURATION_ROOM bytes of it.
        self._duration_at = self._segment_start + len(seek_room) + len(info) - _DURATION_ROOM
        colour = _element(0x55B0, _uint(0x55B1, 5) + _uint(0x55B9, 2))  # BT.601 matrix (bt470bg), full range
        video = _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height) + colour)
        entry = _element(
            _TRACK_ENTRY,
            _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 1) + _uint(0x9C, 0) + _element(0x86, b"V_MJPEG") + video,
        )
        tracks = _element(_TRACKS, entry)
        self._info_at = self._segment_start + len(seek_room)
        self._tracks_at = self._info_at + len(info)
        data = head + seek_room + info + tracks
        self._write(data)
        self.size = len(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write_cluster(self, frames: Sequence[tuple[int, bytes]]) -> list[tuple[int, int]]:
        """Append one cluster holding ``frames`` ((time ms, JPEG bytes), times
        increasing, spanning at most ``MAX_CLUSTER_SPAN_MS``); returns each
        JPEG's (byte offset, size) in the file. The bytes are in the file (not
        necessarily on disk) when this returns."""
        if not frames:
            return []
        base = frames[0][0]
        if frames[-1][0] - base > MAX_CLUSTER_SPAN_MS:
            raise ValueError("a cluster may span at most 30 s")
        if self._last_time is not None and base <= self._last_time:
            raise ValueError("frame times must increase")
        body = bytearray(_uint(_TIMESTAMP, base))
        located: list[tuple[int, int]] = []  # offsets within body
        cluster_pos = self.size - self._segment_start
        starts: list[int] = []
        previous = None
        for time, jpeg in frames:
            if previous is not None and time <= previous:
                raise ValueError("frame times must increase")
            previous = time
            block_head = b"\x81" + struct.pack(">hB", time - base, 0x80)
            starts.append(len(body))
            body += _id(_SIMPLE_BLOCK) + _vint(len(block_head) + len(jpeg))
            located.append((len(body) + len(block_head), len(jpeg)))
            body += block_head
            body += jpeg
        header = _id(_CLUSTER) + _vint(len(body))
        self._write(header + bytes(body))
        origin = self.size + len(header)
        self.size = origin + len(body)
        self._last_time = previous
        for (time, _), start in zip(frames, starts):
            self._cues.append((time, cluster_pos, len(header) + start))
        return [(origin + offset, size) for offset, size in located]

    def finish(self, duration_ms: float) -> None:
        """Write the cues, the SeekHead, the Duration and the Segment's size,
        then fsync and close. Bytes of frames are never touched."""
        try:
            cues_pos = self.size - self._segment_start
            points = b"".join(
                _element(
                    _CUE_POINT,
                    _uint(_CUE_TIME, t)
                    + _element(_CUE_TRACK_POSITIONS, _uint(_CUE_TRACK, 1) + _uint(_CUE_CLUSTER_POSITION, pos) + _uint(_CUE_RELATIVE_POSITION, rel)),
                )
                for t, pos, rel in self._cues
            )
            self._write(_element(_CUES, points))
            self.size = os.lseek(self._fd, 0, os.SEEK_END)

            def seek(element: int, at: int) -> bytes:
                return _element(_SEEK, _element(_SEEK_ID, _id(element)) + _uint(_SEEK_POSITION, at))

            seek_head = _element(
                _SEEK_HEAD,
                seek(_INFO, self._info_at - self._segment_start) + seek(_TRACKS, self._tracks_at - self._segment_start) + seek(_CUES, cues_pos),
            )
            os.pwrite(self._fd, seek_head + _void(_SEEK_HEAD_ROOM - len(seek_head)), self._segment_start)
            os.pwrite(self._fd, _id(_DURATION) + _vint(8) + struct.pack(">d", float(duration_ms)), self._duration_at)
            os.pwrite(self._fd, _vint(self.size - self._segment_start, 8), self._segment_start - 8)
            os.fsync(self._fd)
        finally:
            self.close()

    def close(self) -> None:
        """Close without finishing (the file stays a readable stream of unknown size)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
