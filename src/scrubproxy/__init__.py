"""scrubproxy: all-intra proxies of recording segments, for instant, frame-exact scrubbing.

Public API (everything else may change)::

    from scrubproxy import ProxyCache, ProxySettings
    cache = ProxyCache()                      # or ProxyCache(root=...)
    proxy = cache.ensure("segment.mp4")       # encodes once, then a sub-millisecond hit
"""

from ._version import __version__
from .cache import CacheEntry, ProxyCache
from .encode import EncodeResult
from .errors import (
    BadInputError,
    CacheRootRefusedError,
    EncodeError,
    InvalidSessionError,
    PlayerError,
    ScrubProxyError,
    SourceUnreadableError,
)
from .player import Player
from .probe import SourceInfo, probe
from .reader import ProxyMetadata, ProxyReader
from .settings import ProxySettings
from .watch import SegmentWatcher

__all__ = [
    "BadInputError",
    "CacheEntry",
    "CacheRootRefusedError",
    "EncodeError",
    "EncodeResult",
    "InvalidSessionError",
    "Player",
    "PlayerError",
    "ProxyCache",
    "ProxyMetadata",
    "ProxyReader",
    "ProxySettings",
    "ScrubProxyError",
    "SegmentWatcher",
    "SourceInfo",
    "SourceUnreadableError",
    "__version__",
    "probe",
]
