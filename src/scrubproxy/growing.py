"""A source file that is still being written: reads that wait for the recorder.

FFmpeg's demuxers treat the end of the bytes as the end of the recording. A
segment being recorded has no end yet, so :class:`GrowingFile` hands PyAV a
file object whose reads wait at the end of the bytes until more arrive, and
return the end of the file only once the recorder is done with it. Whether it
is done is the caller's decision (the watcher sees the recorder close it); by
default it is decided here, from what the operating system says: no process
holds the file open for writing (Linux ``/proc``), and its size and mtime stayed
unchanged for ``quiet`` seconds (``settle`` where ``/proc`` cannot tell).

A file that shrinks, is replaced (another inode at the path) or deleted while
followed is another recording: reads raise :class:`SourceChangedError`.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import ScrubProxyError
from .probe import iso_boxes

#: Seconds between looks at a file whose reader waits at its end.
POLL = 0.02


class SourceChangedError(ScrubProxyError):
    """The followed file was truncated, replaced or deleted: what was read belongs to another file."""

    exit_code = 3


class FollowStopped(Exception):
    """The follow was asked to stop (not an error of the source)."""


def open_for_writing(path: Path) -> bool | None:
    """Does any process hold ``path`` open for writing? None when this system
    cannot tell (no ``/proc``). Reads ``/proc/*/fd`` and the flags in
    ``/proc/*/fdinfo``: a few milliseconds on a desktop's few hundred processes."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    try:
        target = os.stat(path)
    except OSError:
        return False
    me = os.getpid()
    for pid in os.listdir(proc):
        if not pid.isdigit() or int(pid) == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if st.st_ino != target.st_ino or st.st_dev != target.st_dev:
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                return True  # cannot tell how it is open: assume the worst, keep following
            if flags & (os.O_WRONLY | os.O_RDWR):
                return True
    return False


class WriterGone:
    """The default "is the recorder done?" rule for a followed file (see the module docstring)."""

    def __init__(self, path: Path, quiet: float = 1.0, settle: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.quiet, self.settle, self.clock = path, quiet, settle, clock
        self._last: tuple[int, int] | None = None
        self._since = clock()
        self._checked = 0.0

    def __call__(self) -> bool:
        now = self.clock()
        try:
            st = os.stat(self.path)
        except OSError:
            return True  # gone: the reader reports it
        stat = (st.st_size, st.st_mtime_ns)
        if stat != self._last:
            self._last, self._since = stat, now
            return False
        unchanged = now - self._since
        if unchanged < self.quiet:
            return False
        if now - self._checked < 0.25:  # /proc scans are not free: a few a second at most
            return False
        self._checked = now
        writing = open_for_writing(self.path)
        if writing is None:
            return unchanged >= self.settle
        return not writing


def wait_until(is_done: Callable[[], bool], stop: threading.Event | None = None, poll: float = 0.1) -> None:
    """Block until ``is_done()``; ``FollowStopped`` when ``stop`` is set first."""
    while not is_done():
        if stop is not None and stop.wait(poll):
            raise FollowStopped
        if stop is None:
            time.sleep(poll)


class GrowingFile(io.RawIOBase):
    """A read-only file object for PyAV whose reads wait at the end of the bytes
    until ``is_done()`` says the writer has finished (or ``stop`` is set)."""

    def __init__(self, path: str | Path, is_done: Callable[[], bool], stop: threading.Event | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.is_done = is_done
        self.stop = stop or threading.Event()
        self._fd = os.open(self.path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self.identity = (st.st_dev, st.st_ino)
        self._pos = 0
        #: monotonic time since which a read waits at the end of the bytes, else None
        self.waiting_since: float | None = None
        self.finished = False  # the writer was done and every byte was read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        # Read as a stream: on a seekable input the MP4 demuxer reads ahead to the
        # end of a fragmented file and MPEG-TS probes its whole length, both of
        # which would wait for the recording to end (measured).
        return False

    def _check_same_file(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SourceChangedError(self.path, "deleted while being followed") from None
        if (st.st_dev, st.st_ino) != self.identity:
            raise SourceChangedError(self.path, "replaced by another file while being followed")
        if st.st_size < self._pos:
            raise SourceChangedError(self.path, f"truncated while being followed (now {st.st_size} bytes, {self._pos} were read)")

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            n = os.preadv(self._fd, [buffer], self._pos)
            if n:
                self._pos += n
                self.waiting_since = None
                return n
            self._check_same_file()
            if self.is_done():
                n = os.preadv(self._fd, [buffer], self._pos)  # the last bytes may have landed meanwhile
                if n:
                    self._pos += n
                    return n
                self.finished = True
                return 0
            if self.stop.is_set():
                raise FollowStopped
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
            time.sleep(POLL)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = os.fstat(self._fd).st_size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


def followable(path: Path) -> bool | None:
    """Can this file be read while it is written? Matroska/WebM, MPEG-TS (also
    192-byte M2TS), FLV and fragmented MP4/MOV (a ``moov`` with ``mvex`` before any
    media) can; a plain MP4/MOV, whose index is written at the end, cannot.
    None while too few bytes are there to tell (reads at most a few boxes' headers)."""
    try:
        with open(path, "rb") as f:
            head = f.read(400)
    except OSError:
        return None
    if len(head) < 12:
        return None
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV":
        return True
    if head[0] == 0x47 and (len(head) <= 188 or head[188] == 0x47):
        return True if len(head) > 188 else None
    if head[4] == 0x47 and len(head) > 196 and head[196] == 0x47:
        return True
    if head[4:8] not in (b"ftyp", b"moov", b"free", b"skip", b"wide", b"mdat"):
        return False
    for kind, pos, size in iso_boxes(path, limit=8):
        if kind == b"mdat" or kind == b"moof":
            return kind == b"moof"
        if kind == b"moov":
            if size is None:
                return None
            with open(path, "rb") as f:
                f.seek(pos)
                return b"mvex" in f.read(size)
    return None
