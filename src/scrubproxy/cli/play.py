"""``scrubproxy play``: scrub one or more segments (or a whole session) in mpv, frame-exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInputError
from ..settings import ProxySettings
from .common import DEFAULT_JOBS, CliState, Jobs, Quiet, Session, check_sources, command, ensure_proxies, stderr

KEYS = (
    "keys: right/left (or . and ,) one frame | shift+right/left 1 s | up/down 10 s | home/end first/last frame"
    " (end while recording: reload, then the newest frame) | J/K/L shuttle | space play/pause"
    " | o open the original at this frame | q quit"
)

#: mpv options that take over what the Player needs for itself: its IPC socket is how it drives mpv.
RESERVED_MPV_OPTIONS = ("--input-ipc-server", "--input-ipc-client")


def check_mpv_args(args: list[str]) -> list[str]:
    """``args``, unless one would take the Player's control of mpv away."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in RESERVED_MPV_OPTIONS:
            raise BadInputError(None, f"--mpv-arg={arg}: scrubproxy drives mpv through its own IPC socket; {name} would take it away (drop this option)")
    return args


@command(long_running=True)
def play(
    cli: CliState,
    settings: ProxySettings,
    sources: Annotated[
        Optional[list[Path]],
        typer.Argument(metavar="SRC...", help="Source segments, played as one timeline in this order (default: every segment of --session).", show_default=False),
    ] = None,
    session: Session = None,
    mpv_arg: Annotated[
        list[str], typer.Option("--mpv-arg", metavar="OPT", help="Extra mpv option, repeatable (e.g. --mpv-arg=--fs); also given to the original's viewer.")
    ] = [],  # noqa: B006 (click's default, never mutated)
    jobs: Jobs = DEFAULT_JOBS,
    quiet: Quiet = False,
) -> None:
    """Scrub SRC... in mpv on their proxies: exact frames, the source frame number on screen.

    Without SRC, plays every segment of --session in recording order (seg-2 before seg-10).

    While a segment is being recorded (and followed: scrubproxy proxy or watch),
    it plays up to its newest published frame, exactly. End reloads: the new
    frames, and with --session alone the session's new segments, are added at
    the end (every frame keeps its number), then the newest frame is shown.
    """
    from ..player import Player, session_segments  # here: only this command needs mpv

    check_mpv_args(mpv_arg)
    cache = cli.cache()
    watch = not sources  # a whole session: End also picks up its new segments
    if sources:
        sources = check_sources(sources)
    elif session is None:
        raise BadInputError(None, "nothing to play: give SRC..., or --session S for a whole session")
    else:
        sources = session_segments(cache, session, settings)  # whatever settings the valid proxies have
    live = {s for s in sources if cache.live_proxy(s, session, settings) is not None}  # followed now: nothing to make
    ensure_proxies(cli, [s for s in sources if s not in live], session, settings, jobs=jobs, show=not quiet)
    with Player(sources, session, cache, settings=settings, mpv_args=mpv_arg, original_args=mpv_arg, watch_session=watch) as player:
        if not quiet:  # once mpv shows the first frame
            stderr.print(KEYS, highlight=False)
        player.wait()
