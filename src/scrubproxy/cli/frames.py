"""``scrubproxy frames``: a source's exact frame table for other tools (torchcodec, JSON, CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInputError
from ..frametable import FORMATS, format_frame_table, frame_table
from ..settings import ProxySettings
from .common import CliState, Session, Source, check_sources, command, stderr


@command()
def frames(
    cli: CliState,
    settings: ProxySettings,
    source: Source,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "torchcodec",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    session: Session = None,
) -> None:
    """Write SRC's frame table (pts, duration, key frame, in the stream's time base) from its proxy's frame map."""
    if fmt not in FORMATS:
        raise BadInputError(None, f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    [source] = check_sources([source])
    with cli.cache().open(source, session, settings) as reader:
        table = frame_table(reader, source)
    text = format_frame_table(table, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    stderr.print(f"{len(table)} frames, {int(table.key_frame.sum())} key frames, stream {table.stream_index}, time base {table.time_base}", highlight=False)
    typer.echo(str(output))
