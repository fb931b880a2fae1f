"""Keep the proxy cache under a size budget by removing least recently used proxies.

"Last used" is the manifest's atime (``ensure`` hits and ``ProxyReader``
opens set it, see :func:`scrubproxy.cache.mark_used`). Eviction order: leftovers
of dead encodes, then stale proxies (useless anyway), then valid ones from the
least recently used. A proxy whose lock an encode holds is never removed
(``ProxyCache.remove_entry`` skips it), nor any path in ``keep`` (the proxy
just made, which is why the budget is being enforced).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..cache import CacheEntry, ProxyCache
from ..errors import BadInputError

log = logging.getLogger(__name__)

_SIZE_RE = re.compile(r"\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_ORDER = {"orphan": 0, "stale": 1, "valid": 2}


def parse_size(text: str) -> int:
    """Bytes in ``"20G"``, ``"500M"``, ``"1.5T"``, ``"800K"`` or ``"123"`` (binary units: G = 2**30)."""
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise BadInputError(None, f"invalid size {text!r}: use a number with K, M, G or T (e.g. 20G)")
    return int(float(m["num"]) * _UNITS[m["unit"].upper()])


@dataclass(frozen=True)
class BudgetResult:
    """What one pass did: bytes before and after, and the entries removed."""

    size_before: int
    size_after: int
    evicted: tuple[CacheEntry, ...]


def enforce_budget(cache: ProxyCache, max_bytes: int, keep: Collection[Path] = ()) -> BudgetResult:
    """Remove proxies (all sessions) until the cache holds at most ``max_bytes``.

    Never removes a path in ``keep`` or a proxy being encoded; if those alone
    exceed the budget the cache stays over it (logged).
    """
    entries = cache.entries()
    total = before = sum(e.size for e in entries)
    evicted: list[CacheEntry] = []
    if total <= max_bytes:
        return BudgetResult(before, total, ())
    kept = {Path(p) for p in keep}
    for entry in sorted(entries, key=lambda e: (_ORDER.get(e.state, 0), e.last_used or 0.0)):
        if total <= max_bytes:
            break
        if entry.proxy_path in kept:
            continue
        if cache.remove_entry(entry):
            total -= entry.size
            evicted.append(entry)
            log.info(
                "evicted %s (%s, %.1f MB) to stay under the cache budget", entry.proxy_path or entry.key, entry.state, entry.size / 1e6
            )
    if total > max_bytes:
        log.warning("cache holds %.1f MB, over its budget of %.1f MB: the rest is in use or just made", total / 1e6, max_bytes / 1e6)
    return BudgetResult(before, total, tuple(evicted))
