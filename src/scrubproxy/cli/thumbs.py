"""``scrubproxy thumbs``: thumbnail tracks (WebVTT, BIF, Jellyfin trickplay) from the proxies.

Tiles are cut from the proxies (made first when missing) and kept in the
cache beside them; the tracks are written to ``-o DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import BadInputError
from ..settings import ProxySettings
from .common import CliState, Session, check_sources, command, ensure_proxies

if TYPE_CHECKING:
    from ..trickplay import Part


FORMATS = ("vtt", "bif", "jellyfin")
#: Jellyfin's own defaults (TrickplayOptions): a tile every 10 s, 320 px wide.
JELLYFIN_INTERVAL, JELLYFIN_WIDTH = 10.0, 320


@command()
def thumbs(
    cli: CliState,
    settings: ProxySettings,
    fmt: Annotated[str, typer.Option("--format", "-f", help="vtt (WebVTT + sprite sheets), bif (Roku/Plex) or jellyfin (trickplay folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the tracks to.")],
    sources: Annotated[Optional[list[Path]], typer.Argument(metavar="SRC...", help="Source segments: one track each (or use --session).", show_default=False)] = None,
    session: Session = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between tiles (default 1; jellyfin: 10).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Tile width in pixels (default 160; jellyfin: 320).")] = None,
) -> None:
    """Write thumbnail tracks whose every tile is a known frame; print the files written."""
    from ..thumbs import ThumbSpec, open_thumbs
    from ..timeline import Timeline
    from ..trickplay import Part, write_jellyfin

    if fmt not in FORMATS:
        raise BadInputError(None, f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    jellyfin = fmt == "jellyfin"
    spec = ThumbSpec(
        interval=interval if interval is not None else (JELLYFIN_INTERVAL if jellyfin else 1.0),
        width=width if width is not None else (JELLYFIN_WIDTH if jellyfin else 160),
    )
    whole_session = not sources
    if whole_session:
        if session is None:
            raise BadInputError(None, "say what to make thumbnails of: SRC... or --session S")
        sources = cli.cache().session_sources(session)
    else:
        sources = check_sources(sources)
    proxies = ensure_proxies(cli, sources, session, settings, show=False)
    written: list[Path] = []
    with Timeline.open(proxies) as timeline:
        parts = [Part(open_thumbs(s.reader, spec), s.reader.frame_map.times, s.source_offset) for s in timeline.segments]
        try:
            if jellyfin:  # Jellyfin keeps trickplay per file: one folder beside each
                for src, part in zip(sources, parts):
                    written += write_jellyfin(src.stem, Part(part.sheets, part.times), out)
            elif whole_session:
                written += _write(fmt, str(session), parts, out)
            else:
                for src, part in zip(sources, parts):
                    written += _write(fmt, src.stem, [Part(part.sheets, part.times)], out)
        finally:
            for part in parts:
                part.sheets.close()
    for path in written:
        typer.echo(str(path))


def _write(fmt: str, name: str, parts: list[Part], out: Path) -> list[Path]:
    from ..trickplay import write_bif, write_vtt

    return write_vtt(name, parts, out) if fmt == "vtt" else write_bif(name, parts, out)
