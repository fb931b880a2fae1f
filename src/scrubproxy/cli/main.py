"""The ``scrubproxy`` command: the app, its global options, and every command registered on it.

Errors print one line ``error: <file>: <reason>`` on stderr and exit with the
error's code (see errors.py; 130 on Ctrl-C, 143 on SIGTERM); ``--debug`` shows
the traceback. Paths go to stdout, everything for people to stderr. The
commands live in their own modules and never import this one.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer

from .._version import __version__
from .common import EXIT_INTERRUPTED, CliState, Command, stderr

#: Every command, in the order ``--help`` lists them: name -> (module of this
#: package, function, command class: ``Command`` unless the module names its own).
COMMANDS: dict[str, tuple[str, str, Optional[str]]] = {
    "proxy": ("proxies", "proxy", None),
    "path": ("proxies", "path", None),
    "info": ("source", "info", None),
    "ls": ("proxies", "list_entries", None),
    "clean": ("proxies", "clean", None),
    "frame": ("source", "frame", "NegativeIndexCommand"),
    "verify": ("source", "verify", None),
    "frames": ("frames", "frames", None),
    "thumbs": ("thumbs", "thumbs", None),
    "play": ("play", "play", None),
    "serve": ("serve", "serve", None),
    "watch": ("watch", "watch", None),
    "demo": ("demo", "demo", None),
}

#: Global options that take a value, which the command name may follow.
_VALUED_GLOBALS = ("--cache-dir",)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scrubproxy {__version__}")
        raise typer.Exit()


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


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """The typer app with the commands ``names`` registered (all by default)."""
    app = typer.Typer(
        help="Make all-intra proxies of recording segments for instant, frame-exact scrubbing.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(main)
    for name in names:
        module_name, function, cls_name = COMMANDS[name]
        module = importlib.import_module(f".{module_name}", __package__)
        app.command(name, cls=getattr(module, cls_name) if cls_name else Command)(getattr(module, function))
    return app


def named_command(args: Sequence[str]) -> Optional[str]:
    """The command ``args`` run (``None`` for help, a version or an unknown
    name): the first word after the global options."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--help", "--version"):
            return None
        if arg in _VALUED_GLOBALS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> object:
    if name == "app":  # every command registered, built on first use
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: click's base class of usage errors, reached through typer's public BadParameter.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def run() -> None:
    """Console-script entry point: usage errors too end in one ``error:`` line (exit 2)."""
    name = named_command(sys.argv[1:])
    command = typer.main.get_command(build_app([name] if name else COMMANDS))
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
