"""The ``scrubproxy`` command: the app, its global options, and every command registered on it.

Errors print one line ``error: <file>: <reason>`` on stderr and exit with the
error's code (see errors.py; 130 on Ctrl-C, 143 on SIGTERM); ``--debug`` shows
the traceback. Paths go to stdout, everything for people to stderr. The
commands live in their own modules and never import this one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .._version import __version__
from . import demo, frames, play, proxies, serve, source, thumbs, watch
from .common import EXIT_INTERRUPTED, CliState, Command, stderr

app = typer.Typer(
    help="Make all-intra proxies of recording segments for instant, frame-exact scrubbing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scrubproxy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    cache_dir: Annotated[
        Optional[Path], typer.Option("--cache-dir", envvar="SCRUBPROXY_CACHE_DIR", help="Cache root (default: the platform's user cache folder). Also after the command.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log details and show tracebacks. Also after the command.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """scrubproxy: all-intra proxies for instant, frame-exact scrubbing.

    Proxies live in sessions (folders in the cache; 'default' unless --session says
    otherwise); without --session, a command reuses a valid proxy from any session.
    """
    ctx.obj = CliState(cache_dir, debug)


app.command(cls=Command)(proxies.proxy)
app.command(cls=Command)(proxies.path)
app.command(cls=Command)(source.info)
app.command("ls", cls=Command)(proxies.list_entries)
app.command(cls=Command)(proxies.clean)
app.command(cls=source.NegativeIndexCommand)(source.frame)
app.command(cls=Command)(source.verify)
app.command(cls=Command)(frames.frames)
app.command(cls=Command)(thumbs.thumbs)
app.command(cls=Command)(play.play)
app.command(cls=Command)(serve.serve)
app.command(cls=Command)(watch.watch)
app.command(cls=Command)(demo.demo)

#: click's base class of usage errors, reached through typer's public BadParameter.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def run() -> None:
    """Console-script entry point: usage errors too end in one ``error:`` line (exit 2)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="scrubproxy", standalone_mode=False)
    except _USAGE_ERROR as exc:
        message = exc.format_message()
        if message:  # empty when the help was asked for by giving no arguments
            stderr.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        stderr.print("interrupted", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
