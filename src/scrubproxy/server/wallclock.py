"""When a recording started, in wall-clock time, from what the file tells.

In this order (the first that answers wins, and the answer says which):
the container's ``creation_time`` tag (UTC, as FFmpeg and cameras write it),
a timestamp in the file name such as OBS's ``2026-12-02 14-32-05.mkv`` (this
machine's local time, as recorders name files), or the file's mtime minus
the recording's duration (the mtime is when the recorder stopped writing).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import av

#: 2026-12-02 14-32-05, 2026-12-02_14.32.05, 20261202-143205 and the like.
_NAME_STAMP = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})[ _T-]?(\d{2})[-_.:h]?(\d{2})[-_.:m]?(\d{2})(?!\d)")
#: Dates before this are placeholders (0 of the MP4 or Unix epoch), not a recording's start.
_EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def _from_tag(source: Path) -> float | None:
    try:
        with av.open(str(source), metadata_errors="ignore") as c:
            tags = [c.metadata, *(s.metadata for s in c.streams.video)]
    except (av.FFmpegError, OSError):
        return None
    for meta in tags:
        raw = meta.get("creation_time")
        if not raw:
            continue
        try:
            when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        if when.timestamp() >= _EARLIEST:
            return when.timestamp()
    return None


def _from_name(source: Path) -> float | None:
    m = _NAME_STAMP.search(source.stem)
    if m is None:
        return None
    try:
        return dt.datetime(*map(int, m.groups())).timestamp()  # naive: this machine's local time
    except ValueError:
        return None


def recording_start(source: Path | None, duration: float) -> tuple[float | None, str | None]:
    """(Unix time of the first frame, how it was found: ``creation_time``, ``file name``
    or ``file mtime``); ``(None, None)`` when nothing tells."""
    if source is None:
        return None, None
    for how, find in (("creation_time", _from_tag), ("file name", _from_name)):
        when = find(source)
        if when is not None:
            return when, how
    try:
        return source.stat().st_mtime - duration, "file mtime"
    except OSError:
        return None, None
