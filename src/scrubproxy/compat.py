"""The reference module's four functions, same signatures and meaning, on the new cache.

The reference (``cht/scrub/proxy.py``) kept proxies in ``DATA_DIR/proxies``;
here they live in the scrubproxy cache (``SCRUBPROXY_CACHE_DIR`` or the
platform cache folder). What changed underneath: proxies are trusted only when
complete and current, concurrent callers share one encode, session ids cannot
escape the cache, and no system ffmpeg is needed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .cache import ProxyCache
from .encode import encode_proxy
from .errors import BadInputError
from .settings import ProxySettings

PROXY_HEIGHT = 360


def proxy_path_for(segment_path: Path, session_id: str | None = None) -> Path:
    """Return the proxy path for a given segment (it may not exist yet)."""
    return ProxyCache().path_for(segment_path, session_id)


def generate_proxy(segment_path: Path, output_path: Path, height: int = PROXY_HEIGHT) -> Path:
    """Transcode a segment to an MJPEG proxy at ``output_path`` (every frame a
    keyframe) and return ``output_path``. The frame map is written beside it
    (``.frames``). ``output_path`` appears only complete: it is written under a
    temporary name and renamed.

    The file is Matroska whatever its suffix, like every proxy: the
    reference's callers name it ``.avi`` and only play it, and players
    (mpv, FFmpeg) read the container from the bytes, not the name; our readers
    go through the frame map. A second muxer just for the suffix would bring
    AVI back for no consumer.
    """
    output_path = Path(output_path)
    settings = ProxySettings(height=height)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temp_base = output_path.parent / f".{output_path.name}.{secrets.token_hex(4)}.tmp"
    result = encode_proxy(segment_path, temp_base, settings)
    try:
        os.replace(result.frame_map_path, output_path.with_suffix(".frames"))
        os.replace(result.proxy_path, output_path)
    except OSError as exc:
        for p in (result.proxy_path, result.frame_map_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise BadInputError(output_path, f"cannot write the proxy here: {exc.strerror or exc}") from exc
    return output_path


def ensure_proxy(segment_path: Path, session_id: str | None = None, height: int = PROXY_HEIGHT) -> Path:
    """Return the proxy path, generating it if missing, incomplete or stale."""
    return ProxyCache().ensure(segment_path, session_id, ProxySettings(height=height))


def cleanup_proxies(session_id: str | None = None) -> None:
    """Delete the proxies of a session, or all proxies if ``session_id`` is None.

    Only files scrubproxy made inside the cache are removed; a session id such
    as ``".."`` is refused.
    """
    ProxyCache().cleanup(session_id)
