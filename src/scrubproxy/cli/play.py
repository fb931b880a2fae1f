"""``scrubproxy play``: scrub one or more segments (or a whole session) in mpv, frame-exactly.

Registered by a short block at the end of cli.py; imports cli lazily so that
either module can be imported first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from ..errors import BadInputError
from ..settings import ProxySettings

KEYS = "keys: . and , one frame | right/left 1 s | up/down 10 s | o open the original at this frame | q quit"


def _natural_key(path: Path) -> list[object]:
    """seg-2 before seg-10: segments sort in recording order by their numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def session_sources(session: str) -> list[Path]:
    """The sources of a session's valid proxies, in recording order (by name, numbers numerically)."""
    from .main import _cache

    sources = [e.source for e in _cache().entries(session) if e.state == "valid" and e.source is not None]
    if not sources:
        raise BadInputError(None, f"session {session!r} has no valid proxies: give the sources (scrubproxy play SRC... --session {session})")
    return sorted(sources, key=_natural_key)


def play(
    sources: Optional[list[Path]] = typer.Argument(None, help="Source segments, played as one timeline in this order (default: every segment of --session)."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (folder in the cache)."),
    height: int = typer.Option(360, "--height", help="Proxy height in pixels."),
    quality: int = typer.Option(5, "--quality", "-q", help="MJPEG quantiser, 2 (best) to 31 (smallest)."),
    mpv_arg: list[str] = typer.Option([], "--mpv-arg", help="Extra mpv option, repeatable (e.g. --mpv-arg=--fs); also given to the original's viewer."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar, no key help."),
) -> None:
    """Scrub SRC... in mpv on their proxies: exact frames, the source frame number on screen."""
    from .main import _cache, ensure_all, stderr
    from ..player import Player

    if not sources:
        if session is None:
            raise BadInputError(None, "nothing to play: give sources, or --session S for a whole session")
        sources = session_sources(session)
    cache = _cache()
    settings = ProxySettings(height=height, quality=quality)
    ensure_all(cache, sources, session, settings, False, 1, not quiet)
    with Player(sources, session, cache, settings=settings, mpv_args=mpv_arg, original_args=mpv_arg) as player:
        if not quiet:  # once mpv shows the first frame
            stderr.print(KEYS, highlight=False)
        player.wait()
