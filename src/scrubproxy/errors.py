"""The exception hierarchy: every error names the file it is about and a plain reason.

The CLI turns each class into one line ``error: <file>: <reason>`` and its
``exit_code``: 1 for any other library error, 2 for bad input, 3 for a source
that cannot be read (or a damaged proxy), 4 for an encode (or cache write) that
failed, 5 for the player (mpv missing, died or hung), 6 for a Dask cluster that
cannot be used (unreachable scheduler, extra not installed). The CLI's own
codes: 0 ok, 1 on a verify mismatch, 2 on a usage error, 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

from pathlib import Path


class ScrubProxyError(Exception):
    """Base class. ``path`` is the file (or folder) concerned, ``reason`` one line."""

    exit_code = 1

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class BadInputError(ScrubProxyError, ValueError):
    """The caller asked for something impossible: missing path, bad option, bad session id."""

    exit_code = 2


class InvalidSessionError(BadInputError):
    """A session id that could reach outside its own folder, or is otherwise malformed."""


class CacheRootRefusedError(BadInputError):
    """A cleanup aimed at a folder that is not a scrubproxy cache (``/``, home, foreign files)."""


class SourceUnreadableError(ScrubProxyError):
    """The source exists but holds no decodable video."""

    exit_code = 3


class EncodeError(ScrubProxyError):
    """Making or publishing the proxy failed (disk full, unwritable cache, encoder error)."""

    exit_code = 4


class HardwareDecodeError(EncodeError):
    """A hardware decoder failed; the encoder catches this and falls back to the CPU."""


class ProxyFormatError(ScrubProxyError):
    """A proxy or frame map on disk is damaged or of another format version."""

    exit_code = 3


class PlayerError(ScrubProxyError):
    """mpv is missing, would not start, died, or stopped answering."""

    exit_code = 5


class NotARecordingError(SourceUnreadableError):
    """The file reads, but is not a recording: text, a still image, audio,
    subtitles or data only. ``kind`` names which (``probe.REFUSED_KINDS``)."""

    def __init__(self, path: str | Path | None, kind: str, reason: str) -> None:
        self.kind = kind
        super().__init__(path, reason)


class ClusterError(ScrubProxyError):
    """The Dask cluster cannot be used: scheduler unreachable, extra not installed, cluster gone."""

    exit_code = 6
