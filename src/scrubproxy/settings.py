"""Proxy settings and cache-root resolution."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .errors import BadInputError

#: Bump when the bytes a proxy or frame map holds change meaning: every proxy
#: made by an older version becomes stale and is rebuilt.
FORMAT_VERSION = 2  # 2: every proxy is Matroska (1 held AVI for constant-rate sources)

CODECS = ("mjpeg",)
MIN_HEIGHT, MAX_HEIGHT = 16, 4320
MIN_QUALITY, MAX_QUALITY = 2, 31


@dataclass(frozen=True)
class ProxySettings:
    """What a proxy is made with. Every field is part of the cache fingerprint,
    except ``hwaccel``, which changes the speed, not the proxy.

    - ``height``: proxy height in pixels (never above the source's own height;
      rounded down to even).
    - ``quality``: MJPEG quantiser, 2 (best) to 31 (smallest); 5 as in the
      reference's ``-q:v 5``.
    - ``stream``: index of the source's video stream to use among its video
      streams, or ``None`` for the one a player shows by default.
    - ``hwaccel``: ``"auto"`` (try the hardware decoders, fall back to CPU),
      ``"none"``, or one device type (``"cuda"``, ``"vaapi"``, ...).
    """

    height: int = 360
    quality: int = 5
    codec: str = "mjpeg"
    stream: int | None = None
    hwaccel: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.height, bool) or not isinstance(self.height, int) or not MIN_HEIGHT <= self.height <= MAX_HEIGHT:
            raise BadInputError(None, f"height must be an integer from {MIN_HEIGHT} to {MAX_HEIGHT}, got {self.height!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not MIN_QUALITY <= self.quality <= MAX_QUALITY:
            raise BadInputError(None, f"quality must be an integer from {MIN_QUALITY} (best) to {MAX_QUALITY}, got {self.quality!r}")
        if self.codec not in CODECS:
            raise BadInputError(None, f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.stream is not None and (isinstance(self.stream, bool) or not isinstance(self.stream, int) or self.stream < 0):
            raise BadInputError(None, f"stream must be a video stream number >= 0, got {self.stream!r}")
        if not isinstance(self.hwaccel, str) or not self.hwaccel:
            raise BadInputError(None, f"hwaccel must be 'auto', 'none' or a device type, got {self.hwaccel!r}")

    def fingerprint(self) -> dict[str, object]:
        """The settings that decide the proxy's content (stored in the manifest)."""
        # A literal, not dataclasses.asdict: this runs on every cache hit.
        return {"height": self.height, "quality": self.quality, "codec": self.codec, "stream": self.stream}


def resolve_cache_root(root: str | Path | None = None) -> Path:
    """The cache root: ``root`` if given, else ``$SCRUBPROXY_CACHE_DIR``, else the
    platform's user cache folder. Returned absolute, not created."""
    if root is None:
        root = os.environ.get("SCRUBPROXY_CACHE_DIR") or platformdirs.user_cache_dir("scrubproxy")
    return Path(root).expanduser().absolute()
