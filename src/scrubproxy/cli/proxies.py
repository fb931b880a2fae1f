"""The cache commands: ``proxy`` (make or reuse), ``path``, ``ls`` and ``clean``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import BadInputError
from ..settings import ProxySettings
from .common import (
    DEFAULT_JOBS,
    AsJson,
    CliState,
    ClusterChoice,
    Jobs,
    Quiet,
    Session,
    Source,
    Sources,
    check_sources,
    command,
    ensure_proxies,
    stderr,
)


@command(long_running=True)
def proxy(
    cli: CliState,
    settings: ProxySettings,
    cluster: Optional[ClusterChoice],
    sources: Sources,
    session: Session = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even valid proxies.")] = False,
    jobs: Jobs = DEFAULT_JOBS,
    quiet: Quiet = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="A SRC still being recorded is followed to its end (default); --no-follow takes what is there now, marked partial.",
        ),
    ] = True,
) -> None:
    """Make (or reuse) the proxy of each SRC; print each proxy's path.

    A SRC that a recorder is still writing is never published as complete: it is
    followed until the recorder closes it (Matroska, MPEG-TS, fragmented MP4), or
    waited for (an MP4/MOV whose index comes at the end).

    With --scheduler the encodes run on a Dask cluster's workers (the sources
    and the cache on storage they see); progress, paths and errors are a local run's.
    """
    for path in ensure_proxies(cli, check_sources(sources), session, settings, jobs=jobs, force=force, show=not quiet, follow=follow, on=cluster):
        typer.echo(str(path))


@command()
def path(cli: CliState, settings: ProxySettings, source: Source, session: Session = None) -> None:
    """Print where the proxy of SRC lives (or will live). Encodes nothing."""
    [source] = check_sources([source])
    typer.echo(str(cli.cache().path_for(source, session, settings)))


def _age(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    secs = max(0, time.time() - ts)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs / n:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


@command()
def list_entries(
    cli: CliState,
    session: Annotated[Optional[str], typer.Option("--session", "-s", metavar="S", help="Only this session (default: every session).")] = None,
    as_json: AsJson = False,
) -> None:
    """List the proxies in the cache: session, source, size, frames, state, last use."""
    from rich.table import Table

    entries = cli.cache().entries(session)
    if as_json:
        rows = [
            {
                "session": e.session,
                "key": e.key,
                "source": str(e.source) if e.source else None,
                "proxy": str(e.proxy_path) if e.proxy_path else None,
                "size": e.size,
                "frames": e.frames,
                "state": e.state,
                "partial": e.partial,
                "last_used": e.last_used,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("session", "source", "size", "frames", "state", "last use")
    for e in entries:
        state_text = e.state + (" (partial)" if e.partial else "")
        table.add_row(e.session, str(e.source or e.key), f"{e.size / 1e6:.1f} MB", str(e.frames or "-"), state_text, _age(e.last_used))
    Console().print(table)


@command()
def clean(
    cli: CliState,
    session: Annotated[Optional[str], typer.Option("--session", "-s", metavar="S", help="Clean this session (proxies are made in 'default' unless --session said otherwise).")] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Clean every session.")] = False,
    stale: Annotated[bool, typer.Option("--stale", help="Only proxies whose source is gone or changed (and leftovers).")] = False,
) -> None:
    """Delete proxies: one session's, every session's (--all), or only stale ones."""
    if session is None and not all_sessions and not stale:
        raise BadInputError(None, "say which: --session S, --all, or --stale")
    if session is not None and all_sessions:
        raise BadInputError(None, "--session and --all exclude each other")
    cache = cli.cache()
    if session is not None and not cache.entries(session):
        sessions = sorted({e.session for e in cache.entries()})
        known = f"sessions in {cache.root}: {', '.join(sessions)}" if sessions else f"the cache {cache.root} has no sessions"
        raise BadInputError(None, f"session {session!r} has no proxies ({known})")
    removed = cache.cleanup(session, stale_only=stale)
    stderr.print(f"removed {removed} prox{'y' if removed == 1 else 'ies'}", highlight=False)
