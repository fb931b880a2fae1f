"""A session's timeline while it is recorded: a new :class:`Timeline` snapshot as segments arrive and grow.

A watcher or follower fills the session in other processes; a viewer asks
again and again. :meth:`SessionTimeline.update` (at most every ``INTERVAL``
seconds, whoever asks) refreshes the live readers (a frame-map header read
each), stats the session folder and lists its segments again only when the
folder changed (files come, go or are renamed there when a segment starts,
ends or is rebuilt; growth alone does not touch the folder), or every
``RELIST`` seconds in any case. Nothing is ever decoded.

Global frame numbers must keep naming the frames already shown: the
timeline only grows at its end. So segments after a live one wait until it
has ended (its growth would move their numbers); a segment that arrives in
the middle, a rebuilt proxy or a dropped live one makes another version.
Versions are hashes of the segments' build ids, so a growing segment keeps
its version; every version made is remembered with its build ids, and one
stays good (:meth:`accepts`) while they are a prefix of the current ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .cache import ProxyCache, recording_order, validate_session
from .errors import ProxyFormatError
from .reader import ProxyReader
from .timeline import Timeline

log = logging.getLogger(__name__)

#: Seconds between two looks at the session (a header read per live segment and a stat).
INTERVAL = 0.25
#: Seconds after which the session is listed again even when its folder looks unchanged.
RELIST = 5.0
#: Seconds a reader that left the timeline stays open for requests still using it.
RETIRE_AFTER = 60.0


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is now (a rebuilt proxy's frame map is another file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


class SessionTimeline:
    """The valid and live segments of ``session`` (None: the default one; proxies
    of any settings) in recording order, as a timeline that grows.

    ``current`` is the latest snapshot (never waits); ``update()`` makes a new
    one when one is due. Safe to share between threads; ``close()`` closes
    every reader it opened.
    """

    def __init__(self, cache: ProxyCache, session: str | None, interval: float = INTERVAL) -> None:
        self.cache = cache
        self.session = validate_session(session)
        self.interval = interval
        self._folder = cache.session_dir(session)
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[ProxyReader, tuple[int, int, int] | None]] = {}
        self._retired: list[tuple[float, ProxyReader]] = []
        self._proxies: list[Path] = []
        self._folder_seen: object = ()
        self._listed_at = self._looked_at = -float("inf")
        self.current = Timeline([])
        self._versions: dict[str, tuple[str, ...]] = {self.current.version: ()}
        self.update()

    def accepts(self, version: str) -> bool:
        """Does ``version`` (of an earlier snapshot) still name the same frames?"""
        current = self.current
        if version == current.version:
            return True
        builds = self._versions.get(version)
        return builds is not None and current.build_ids[: len(builds)] == builds

    def update(self) -> Timeline:
        """The latest snapshot, made anew when the last look is ``interval`` seconds old."""
        with self._lock:
            now = time.monotonic()
            if now - self._looked_at < self.interval:
                return self.current
            self._looked_at = now
            folder = _identity(self._folder)
            if folder != self._folder_seen or now - self._listed_at >= RELIST:
                self._proxies = self._list()
                self._folder_seen, self._listed_at = folder, now
            readers = []
            for path in self._proxies:
                reader = self._reader(path)
                if reader is None or not len(reader):
                    if reader is not None and reader.live:
                        break  # no frame yet: it, and what comes after it, arrive with its first
                    continue
                readers.append(reader)
                if reader.live:
                    break  # later segments wait: this one's growth would move their numbers
            self._retire({r.path for r in readers}, now)
            self.current = Timeline(readers)
            self._versions.setdefault(self.current.version, self.current.build_ids)
            return self.current

    def _list(self) -> list[Path]:
        """The proxies of the session's valid and live segments, in recording order."""
        listed = self.cache.entries(self.session)
        entries = [e for e in listed if e.state in ("valid", "live") and e.source is not None and e.proxy_path is not None]
        entries.sort(key=lambda e: recording_order(e.source))
        return [e.proxy_path for e in entries]

    def _reader(self, path: Path) -> ProxyReader | None:
        """The open reader of ``path``, refreshed, or a new one when its files changed; None when unreadable."""
        known = self._open.get(path)
        if known is not None:
            reader, identity = known
            if not reader.frame_map.complete:
                try:
                    reader.refresh()
                    if reader.frame_map.complete:  # ended: from now on its files never change
                        self._open[path] = (reader, _identity(reader.frame_map.path))
                    return reader
                except ProxyFormatError:
                    pass  # the live proxy was dropped or replaced
            elif identity == _identity(reader.frame_map.path):
                return reader
            del self._open[path]
            self._retired.append((time.monotonic(), reader))
        try:
            reader = ProxyReader(path)
        except ProxyFormatError as exc:
            log.debug("%s: not on the timeline: %s", path, exc.reason)
            return None
        self._open[path] = (reader, _identity(reader.frame_map.path))
        return reader

    def _retire(self, used: set[Path], now: float) -> None:
        """Set aside the readers no longer on the timeline; close those set aside long enough ago."""
        for path in [p for p in self._open if p not in used and p not in self._proxies]:
            self._retired.append((now, self._open.pop(path)[0]))
        keep = []
        for since, reader in self._retired:
            if now - since >= RETIRE_AFTER:
                reader.close()
            else:
                keep.append((since, reader))
        self._retired = keep

    def close(self) -> None:
        with self._lock:
            for reader, _ in self._open.values():
                reader.close()
            for _, reader in self._retired:
                reader.close()
            self._open.clear()
            self._retired.clear()

    def __enter__(self) -> "SessionTimeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
