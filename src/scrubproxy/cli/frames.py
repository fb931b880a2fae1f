"""``scrubproxy frames``: a source's exact frame table for other tools (torchcodec, JSON, CSV).

Reads the cache root from the root command's own ``--cache-dir`` (the click
context), so that this module needs nothing from cli/main.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cache import ProxyCache
from ..errors import BadInputError
from ..frametable import FORMATS, format_frame_table, frame_table


def frames(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="Source segment."),
    fmt: str = typer.Option("torchcodec", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id."),
) -> None:
    """Write SRC's frame table (pts, duration, key frame, in the stream's time base) from its proxy's frame map."""
    if fmt not in FORMATS:
        raise BadInputError(None, f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    with ProxyCache(ctx.find_root().params.get("cache_dir")).open(source, session) as reader:
        table = frame_table(reader, source)
    text = format_frame_table(table, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    typer.echo(f"{len(table)} frames, {int(table.key_frame.sum())} key frames, stream {table.stream_index}, time base {table.time_base}", err=True)
    typer.echo(str(output))
