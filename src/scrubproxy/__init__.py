"""scrubproxy: all-intra proxies of recording segments, for instant, frame-exact scrubbing.

Public API (everything else may change)::

    from scrubproxy import ProxyCache, ProxySettings, ProxyReader, Player
    cache = ProxyCache()                      # or ProxyCache(root=...)
    proxy = cache.ensure("segment.mp4")       # encodes once, then a sub-millisecond hit
    with cache.open("segment.mp4") as r:      # frame k of the source: r[k], r.jpeg(k)
        ...
"""

from ._version import __version__
from .cache import DEFAULT_SESSION, CacheEntry, ProxyCache
from .encode import EncodeResult
from .errors import (
    BadInputError,
    CacheRootRefusedError,
    EncodeError,
    InvalidSessionError,
    PlayerError,
    ProxyFormatError,
    ScrubProxyError,
    SourceUnreadableError,
)
from .probe import SourceInfo, probe
from .reader import FrameBatch, ProxyMetadata, ProxyReader
from .settings import ProxySettings
from .timeline import Timeline

#: Loaded on first use: the player and the watcher bring modules (mpv IPC,
#: watchdog) that making and reading proxies never needs.
_LAZY = {"Player": ".player", "SegmentWatcher": ".watch"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scrubproxy' has no attribute {name!r}")

__all__ = [
    "BadInputError",
    "CacheEntry",
    "CacheRootRefusedError",
    "DEFAULT_SESSION",
    "EncodeError",
    "EncodeResult",
    "FrameBatch",
    "InvalidSessionError",
    "Player",
    "PlayerError",
    "ProxyCache",
    "ProxyFormatError",
    "ProxyMetadata",
    "ProxyReader",
    "ProxySettings",
    "ScrubProxyError",
    "SegmentWatcher",
    "SourceInfo",
    "SourceUnreadableError",
    "Timeline",
    "__version__",
    "probe",
]
