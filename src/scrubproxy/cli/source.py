"""The commands about one source: ``info``, ``verify`` and ``frame``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import BadInputError
from ..hwchoice import remembered_choice
from ..probe import probe
from ..settings import ProxySettings
from .common import AsJson, CliState, Command, Quiet, Session, Source, check_sources, command, ensure_proxies, progress_bar, stderr


@command()
def info(cli: CliState, settings: ProxySettings, source: Source, session: Session = None, as_json: AsJson = False) -> None:
    """Describe SRC (streams, rate, variable rate, rotation, colour) and the state of its proxy with these settings."""
    from .. import deinterlace, tonemap
    from ..framemap import published_count
    from ..reader import ProxyReader

    [source] = check_sources([source])
    src = probe(source, settings.stream)
    cache = cli.cache()
    if session is None:
        found = cache.find(source, settings)
    else:
        hit = cache.lookup(source, session, settings)
        found = (session, hit) if hit is not None else None
    live = cache.live_proxy(source, session, settings) if found is None else None
    if found is not None:
        with ProxyReader(found[1]) as reader:
            partial = reader.metadata.partial
        proxy = {"path": str(found[1]), "session": found[0], "state": "partial" if partial else "valid"}
    elif live is not None:
        proxy = {"path": str(live), "session": live.parent.name, "state": "live", "frames": published_count(live.with_suffix(".frames"))}
    else:
        proxy = {"path": str(cache.path_for(source, session, settings)), "session": session, "state": "missing or stale"}
    v = src.video
    data = {
        "source": str(src.path),
        "size": src.size,
        "format": src.format_name,
        "duration": src.duration,
        "streams": [{"index": s.index, "type": s.type, "codec": s.codec, "detail": s.detail} for s in src.streams],
        "video": {
            "stream": v.index,
            "codec": v.codec,
            "width": v.width,
            "height": v.height,
            "display_width": v.display_width,
            "display_height": v.display_height,
            "sample_aspect": str(v.sample_aspect),
            "rotation": v.rotation,
            "pix_fmt": v.pix_fmt,
            "bit_depth": v.bit_depth,
            "matrix": v.matrix,
            "range": v.color_range,
            "average_rate": str(v.average_rate) if v.average_rate else None,
            "frames": v.frame_count,
            "variable_rate": v.variable_rate,
            "time_base": str(v.time_base),
            "start_pts": v.start_pts,
        },
        "kind": src.kind,
        "transfer": v.transfer,
        "primaries": v.primaries,
        "field_order": v.field_order,
        "hdr": tonemap.describe(src),
        "interlaced": deinterlace.describe(src),
        "proxy": proxy,
    }
    choice = remembered_choice(cache.root, src)
    data["hwaccel_auto"] = choice.as_json() if choice else None  # measured at its first encode on this machine
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    out = Console()
    out.print(f"[bold]{src.path}[/] ({src.kind}: {src.format_name}, {src.size / 1e6:.1f} MB, {src.duration or 0:.2f} s)")
    for s in src.streams:
        out.print(f"  stream {s.index}: {s.type} {s.codec} {s.detail}", highlight=False)
    rate = f"{float(v.average_rate):.3f} fps" if v.average_rate else "unknown rate"
    out.print(
        f"  video: stream {v.index}, {v.width}x{v.height} -> shown {v.display_width}x{v.display_height}, "
        f"{rate}, {'variable' if v.variable_rate else 'constant'} rate, {v.frame_count} frames, rotation {v.rotation}, "
        f"{v.pix_fmt} ({v.bit_depth}-bit), matrix {v.matrix}, {v.color_range} range, transfer {v.transfer}, primaries {v.primaries}, {v.field_order}",
        highlight=False,
    )
    for line in (data["hdr"], data["interlaced"]):
        if line:
            out.print(f"  {line}", highlight=False)
    where = f", session {proxy['session']}" if proxy["session"] else ""
    so_far = f", {proxy['frames']} frames so far" if proxy["state"] == "live" else ""
    out.print(f"  proxy: {proxy['path']} ({proxy['state']}{so_far}{where})", highlight=False)
    out.print(f"  hwaccel auto: {choice.describe() if choice else 'not measured yet on this machine (at the first encode)'}", highlight=False)


@command(long_running=True)
def verify(
    cli: CliState,
    settings: ProxySettings,
    source: Source,
    session: Session = None,
    all_frames: Annotated[bool, typer.Option("--all", help="Check every frame (slow on long-GOP sources).")] = False,
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Random frames to check (first and last included).")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the random sample.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Check that proxy frame k is source frame k (count, pts, pixels); exit 1 on any mismatch.

    Makes the proxy first if there is none with these settings.
    """
    from ..reader import ProxyReader
    from ..verify import verify_proxy  # here: only this command needs the source decoder chain

    [proxy_path] = ensure_proxies(cli, check_sources([source]), session, settings, show=not quiet)
    with progress_bar(not quiet) as bar:
        task = bar.add_task(f"verify {Path(source).name}", total=None, note="")
        report = verify_proxy(
            source,
            proxy_path,
            None if all_frames else samples,
            seed,
            settings=settings,
            progress=lambda done, total: bar.update(task, completed=done, total=total, note=f"{done}/{total} frames"),
        )
    for m in report.mismatches:
        where = "frame count" if m.frame < 0 else f"frame {m.frame}"
        typer.echo(f"mismatch: {where}: {m.reason}")
    verdict = "ok" if report.ok else f"{len(report.mismatches)} mismatch(es)"
    with ProxyReader(proxy_path) as reader:
        if reader.metadata.partial:
            verdict += " (partial: the recording was cut short, or taken while still being written)"
    stderr.print(f"{report.source}: {len(report.checked)} of {report.frames} frames checked, {verdict}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


_NEGATIVE = re.compile(r"-\d+")


class NegativeIndexCommand(Command):
    """Takes ``-5`` as a frame number, not as an unknown option: a negative
    number that is no option's value moves behind ``--``, where click reads
    only arguments."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            takes_value = {opt for p in self.params if p.param_type_name == "option" and not getattr(p, "is_flag", False) for opt in p.opts}
            kept: list[str] = []
            negatives: list[str] = []
            for arg in args:
                if _NEGATIVE.fullmatch(arg) and not (kept and kept[-1] in takes_value):
                    negatives.append(arg)
                else:
                    kept.append(arg)
            if negatives:
                args = [*kept, "--", *negatives]
        return super().parse_args(ctx, args)


_STILLS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}


@command()
def frame(
    cli: CliState,
    settings: ProxySettings,
    source: Source,
    index: Annotated[Optional[int], typer.Argument(metavar="[K]", help="Frame number (0 = first; negative counts from the end: -1 = last).", show_default=False)] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Where to write it: .jpg (the proxy's own JPEG) or .png (default: SRCNAME-K.jpg, or SRCNAME-K-original.png with --original)."),
    ] = None,
    at_time: Annotated[Optional[float], typer.Option("--time", "-t", help="Instead of K: the frame shown at this source time (seconds; from 0 to the end of the last frame).")] = None,
    original: Annotated[bool, typer.Option("--original", help="The exact frame of the source itself, at full resolution and upright, instead of the proxy's.")] = False,
    session: Session = None,
) -> None:
    """Write one frame of SRC (frame K, or the one shown at --time) to a file; print its path."""
    from ..original import encode_still

    [source] = check_sources([source])
    if (index is None) == (at_time is None):
        raise BadInputError(source, "give a frame number K or --time T (one of them)")
    if output is not None and output.suffix.lower() not in _STILLS:
        raise BadInputError(output, "output must end in .jpg, .jpeg or .png")
    with cli.cache().open(source, session, settings) as reader:
        n = len(reader)
        if at_time is not None:
            end = reader.metadata.duration
            if not 0 <= at_time <= end:
                raise BadInputError(source, f"time {at_time:g} s is outside the segment (0 to {end:.6f} s)")
            k = reader.index_at(at_time)
        elif -n <= index < n:  # type: ignore[operator]
            k = index % n  # type: ignore[operator]
        else:
            raise BadInputError(source, f"frame {index} out of range (0 to {n - 1}, or -{n} to -1 from the end)")
        out = output or Path(f"{Path(source).stem}-{k:06d}{'-original.png' if original else '.jpg'}")
        fmt = _STILLS[out.suffix.lower()]
        if original:
            data = encode_still(reader.original(k), fmt)
        elif fmt == "jpg":
            data = reader.jpeg(k)
        else:
            data = encode_still(reader[k], "png")
        try:
            out.write_bytes(data)
        except OSError as exc:
            raise BadInputError(out, f"cannot write the frame: {exc.strerror or exc}") from exc
        stderr.print(f"frame {k} at {reader.time_of(k):.6f} s{' (original)' if original else ''}", highlight=False)
    typer.echo(str(out))
