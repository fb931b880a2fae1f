"""scrubproxy: all-intra proxies of recording segments, for instant, frame-exact scrubbing.

Public API (everything else may change)::

    from scrubproxy import ProxyCache, ProxySettings, ProxyReader, Player
    cache = ProxyCache()                      # or ProxyCache(root=...)
    proxy = cache.ensure("segment.mp4")       # encodes once, then a sub-millisecond hit
    with cache.open("segment.mp4") as r:      # frame k of the source: r[k], r.jpeg(k)
        ...
"""

from ._version import __version__
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

# Eager: the name ``probe`` is also a submodule's, which a lazy import would leave
# bound to the module. probe.py loads PyAV only when it opens a file.
from .probe import SourceInfo, probe

#: Loaded on first use, so that ``import scrubproxy`` (and with it every start of
#: the ``scrubproxy`` command) costs no PyAV, NumPy or libjpeg import until a
#: name that needs them is asked for.
_LAZY = {
    "DEFAULT_SESSION": ".cache",
    "CacheEntry": ".cache",
    "ProxyCache": ".cache",
    "EncodeResult": ".encode",
    "FrameBatch": ".reader",
    "ProxyMetadata": ".reader",
    "ProxyReader": ".reader",
    "ProxySettings": ".settings",
    "Timeline": ".timeline",
    "Player": ".player",
    "SegmentWatcher": ".watch",
}


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
