"""What every ``scrubproxy`` command shares, declared once.

- :class:`CliState`: the global options (``--cache-dir``, ``--debug``), kept
  in the click context (``ctx.obj``) by the main callback.
- :func:`command`: turns a plain function into a command: it adds the global
  options (so they work after the subcommand too), the proxy settings when the
  function takes ``settings`` and the Dask cluster options when it takes
  ``cluster`` (a :class:`ClusterChoice`, or ``None`` without ``--scheduler``),
  turns library errors into one ``error:`` line
  and their exit code, and for long-running commands makes SIGTERM stop them
  as Ctrl-C does (encodes stopped, nothing partial left).
- Option types (``Session``, ``Jobs``, ``Quiet``, ``Sources``...) reused by
  every command that takes them, and :func:`ensure_proxies`, which renders
  the progress of :meth:`ProxyCache.ensure_many` (or of the cluster's workers).

Command modules import this one; ``main`` imports them and registers them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand

from ..cache import ProxyCache
from ..errors import BadInputError, ScrubProxyError
from ..settings import MAX_HEIGHT, MAX_QUALITY, MIN_HEIGHT, MIN_QUALITY, ProxySettings

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ..cluster import PathMap


stderr = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes of the command itself (the library's errors carry theirs: see errors.py).
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143  # SIGTERM: 128 + SIGTERM

#: Segments encoded at once, for every command that encodes. One encode already
#: runs a decode thread and up to four conversion threads, and ``watch`` shares
#: the machine with the recorder it follows (measured: ``watch --jobs 1`` keeps
#: up with 1080p30, docs/benchmarks.md).
DEFAULT_JOBS = 1

SESSION_HELP = (
    "Session id (a folder in the cache). Without it, an existing proxy of SRC in any session is reused, "
    "and a new one is made in session 'default'."
)

Session = Annotated[Optional[str], typer.Option("--session", "-s", metavar="S", help=SESSION_HELP)]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Segments encoded at once (each encode is already multithreaded).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
Source = Annotated[Path, typer.Argument(metavar="SRC", help="Source segment (a recording file).", show_default=False)]
Sources = Annotated[list[Path], typer.Argument(metavar="SRC...", help="Source segments, in recording order.", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]


@dataclasses.dataclass
class CliState:
    """The global options, shared by all commands through ``ctx.obj``."""

    cache_dir: Optional[Path] = None
    debug: bool = False

    def cache(self) -> ProxyCache:
        return ProxyCache(self.cache_dir)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the library stops its encodes on a
    KeyboardInterrupt and removes their temporary files, so a terminated
    command leaves the cache as clean as Ctrl-C does."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break the clean-up
    raise Terminated


# -- options added to every command by ``command`` --------------------------------

_GLOBAL_PANEL = "Global options (also before the command)"
_SETTINGS_PANEL = "Proxy settings (part of the proxy's identity, except --hwaccel)"
_DEFAULTS = ProxySettings()


def _keyword(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


_GLOBAL_PARAMS = [
    _keyword("cache_dir", Optional[Path], typer.Option(None, "--cache-dir", help="Cache root (default: $SCRUBPROXY_CACHE_DIR, else the platform's user cache folder).", rich_help_panel=_GLOBAL_PANEL)),
    _keyword("debug", bool, typer.Option(False, "--debug", help="Log details and show tracebacks.", rich_help_panel=_GLOBAL_PANEL)),
]

#: The proxy settings, declared once: every command that makes or reads a proxy takes them all.
_SETTINGS_PARAMS = [
    _keyword("height", int, typer.Option(_DEFAULTS.height, "--height", help=f"Proxy height in pixels ({MIN_HEIGHT}-{MAX_HEIGHT}; never above the source's; rounded down to even).", rich_help_panel=_SETTINGS_PANEL)),
    _keyword("quality", int, typer.Option(_DEFAULTS.quality, "--quality", "-q", help=f"MJPEG quantiser, {MIN_QUALITY} (best) to {MAX_QUALITY} (smallest).", rich_help_panel=_SETTINGS_PANEL)),
    _keyword("stream", Optional[int], typer.Option(_DEFAULTS.stream, "--stream", help="Which video stream (0 = first); default: the one players show.", rich_help_panel=_SETTINGS_PANEL)),
    _keyword("hwaccel", str, typer.Option(_DEFAULTS.hwaccel, "--hwaccel", help="Decoder: auto (hardware if any, else CPU), none, or a device type (cuda, vaapi, qsv, videotoolbox, d3d11va).", rich_help_panel=_SETTINGS_PANEL)),
]
_CLUSTER_PANEL = "Dask cluster (needs the 'dask' extra)"
#: The cluster options, declared once: every command that takes ``cluster`` takes them all.
_CLUSTER_PARAMS = [
    _keyword("scheduler", Optional[str], typer.Option(None, "--scheduler", envvar="SCRUBPROXY_SCHEDULER", metavar="ADDRESS", help="Encode on the workers of this Dask scheduler (tcp://host:8786), or of a LocalCluster started here: local (a worker per two cores) or local:N. --jobs does not apply.", rich_help_panel=_CLUSTER_PANEL)),
    _keyword("path_map", Optional[list[str]], typer.Option(None, "--path-map", metavar="CLIENT=WORKER", help="Where the workers mount what this machine calls CLIENT (e.g. /mnt/rec=/data/rec); repeatable.", rich_help_panel=_CLUSTER_PANEL)),
    _keyword("connect_timeout", float, typer.Option(10.0, "--connect-timeout", min=0.1, metavar="SECONDS", help="How long to wait for the scheduler to answer.", rich_help_panel=_CLUSTER_PANEL)),
]
_CLUSTER_NAMES = tuple(p.name for p in _CLUSTER_PARAMS)
_CONTEXT_PARAM = inspect.Parameter("scrubproxy_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
_SETTINGS_NAMES = tuple(p.name for p in _SETTINGS_PARAMS)


@dataclasses.dataclass(frozen=True)
class ClusterChoice:
    """``--scheduler`` and its options, checked: where and how to reach the cluster."""

    scheduler: str
    path_map: PathMap = ()
    connect_timeout: float = 10.0

    @classmethod
    def from_options(cls, scheduler: Optional[str], path_map: Optional[list[str]], connect_timeout: float) -> Optional[ClusterChoice]:
        """``None`` without ``--scheduler``; bad input (exit 2) for a path map without one."""
        if not scheduler:
            if path_map:
                raise BadInputError(None, "--path-map needs --scheduler (it translates paths for the cluster's workers)")
            return None
        from ..cluster import parse_path_map

        return cls(scheduler, parse_path_map(path_map or ()), connect_timeout)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A client of the cluster for the ``with`` block (exit 6 if Dask is missing or the scheduler silent).

        Dask's own INFO lines (a LocalCluster logs some twenty) and a
        LocalCluster's shutdown noise would bury the command's output: they
        show with --debug only."""
        from .. import cluster

        with contextlib.suppress(ImportError):  # (cluster.connect says what to install)
            import distributed  # noqa: F401  (importing it sets its loggers' levels; ours come after)
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        logging.getLogger("distributed").setLevel(logging.DEBUG if debug else logging.WARNING)
        with cluster.connect(self.scheduler, self.connect_timeout, local_log_level=logging.DEBUG if debug else logging.CRITICAL) as client:
            yield client


def cli_state(ctx: typer.Context) -> CliState:
    """The global options of the command running in ``ctx`` (set by the main callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _setup(ctx: typer.Context, cache_dir: Optional[Path], debug: bool) -> CliState:
    """Merge the global options given after the command into ``ctx.obj``; start logging."""
    cli = cli_state(ctx)
    if cache_dir is not None:
        cli.cache_dir = cache_dir
    cli.debug = cli.debug or debug
    logging.basicConfig(level=logging.DEBUG if cli.debug else logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    return cli


def fail(exc: ScrubProxyError) -> typer.Exit:
    """Print ``error: <file>: <reason>``; the Exit to raise with the error's code."""
    where = f"{exc.path}: " if exc.path is not None else ""
    stderr.print(f"error: {where}{exc.reason}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def command(*, long_running: bool = False) -> Callable[[F], F]:
    """Make ``fn`` a command (register the result with ``app.command()``).

    ``fn`` may take ``cli`` (the :class:`CliState`), ``settings`` (a
    :class:`ProxySettings` built from --height, --quality, --stream and
    --hwaccel, which are then its options) and ``cluster`` (a
    :class:`ClusterChoice` from --scheduler, --path-map and --connect-timeout,
    ``None`` without --scheduler). ``long_running``: SIGTERM stops it like
    Ctrl-C (exit 143 instead of 130).
    """

    def decorate(fn: F) -> F:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = inspect.signature(fn).parameters
        takes_settings = "settings" in own
        takes_cluster = "cluster" in own
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own.values() if p.name not in ("cli", "settings", "cluster")]
        params += (_SETTINGS_PARAMS if takes_settings else []) + (_CLUSTER_PARAMS if takes_cluster else []) + _GLOBAL_PARAMS + [_CONTEXT_PARAM]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            cli = _setup(kwargs.pop(_CONTEXT_PARAM.name), kwargs.pop("cache_dir"), kwargs.pop("debug"))
            if "cli" in own:
                kwargs["cli"] = cli
            previous = signal.signal(signal.SIGTERM, _raise_terminated) if long_running else None
            try:
                if takes_settings:
                    values = {name: kwargs.pop(name) for name in _SETTINGS_NAMES}
                    kwargs["settings"] = ProxySettings(**values)
                if takes_cluster:
                    kwargs["cluster"] = ClusterChoice.from_options(*(kwargs.pop(name) for name in _CLUSTER_NAMES))
                return fn(**kwargs)
            except ScrubProxyError as exc:
                if cli.debug:
                    raise
                raise fail(exc) from None
            except Terminated:
                stderr.print("terminated", highlight=False)
                raise typer.Exit(EXIT_TERMINATED) from None
            except KeyboardInterrupt:
                stderr.print("interrupted", highlight=False)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate


class Command(TyperCommand):
    """Every command's class: arguments appear in the usage line by their
    metavar (``SRC``, ``SRC...``, ``FOLDER...``; ``[SRC...]`` when optional),
    not in typer's braces."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument" or param.metavar is None:
                pieces.extend(param.get_usage_pieces(ctx))
            elif param.required or param.metavar.startswith("["):
                pieces.append(param.metavar)
            else:
                pieces.append(f"[{param.metavar}]")
        return pieces


# -- sources --------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def check_sources(sources: Sequence[Path]) -> list[Path]:
    """``sources`` as given, after the mistakes whose fix the library cannot
    suggest: a pattern the shell passed on as is, a folder."""
    for src in sources:
        path = Path(src).expanduser().absolute()
        if not path.exists() and _GLOB_CHARS & set(str(src)):
            raise BadInputError(path, "matched no file (the shell passes a pattern that matches nothing on as it is)")
        if path.is_dir():
            raise BadInputError(path, f"is a folder: give its segments ({src}/*.mp4), or proxy them all with: scrubproxy watch {src} --once")
    return list(sources)


# -- progress -------------------------------------------------------------------------


def progress_bar(enabled: bool) -> Progress:
    """A rich progress bar on stderr; invisible when stderr is not a terminal or not ``enabled``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
        console=stderr,
        disable=not enabled or not stderr.is_terminal,
    )


#: What a source still being written is waiting for, by ensure_many's state.
_RECORDING = {
    "following": "still being recorded: following it to its end (frames appear as they are recorded)",
    "recording": "still being recorded, in a format that can only be read once closed: waiting for the recorder",
}


class _EnsureProgress:
    """Renders ``ensure_many``'s progress: one line per source and its state in words
    ("waiting for another process", "reused", "12/60 240 fps", "60/60 done")."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.plain = bar.disable  # not a terminal: say only what a log needs (waiting)
        self.tasks: dict[int, TaskID] = {}
        self.following: set[int] = set()  # sources still being recorded: their frames so far
        self.lock = threading.Lock()

    def __call__(self, i: int, source: Path, state: str, done: int, total: Optional[int], fps: float) -> None:
        with self.lock:
            if i not in self.tasks:
                self.tasks[i] = self.bar.add_task(Path(source).name, total=None, note="")
                if state == "waiting" and self.plain:
                    stderr.print(f"{source}: waiting for another process's encode", highlight=False, soft_wrap=True)
            if state in _RECORDING and self.plain:
                stderr.print(f"{source}: {_RECORDING[state]}", highlight=False, soft_wrap=True)
            task = self.tasks[i]
        if state == "waiting":
            self.bar.update(task, note="waiting for another process's encode")
        elif state in _RECORDING:
            self.following.add(i)
            self.bar.update(task, note=_RECORDING[state])
        elif state == "encoding" and i in self.following:
            self.bar.update(task, note=f"{done} frames so far; waiting for the recorder to finish")
        elif state == "reused":
            self.bar.update(task, total=1, completed=1, note="reused")
        elif state == "encoding":
            self.bar.update(task, total=total, completed=done, note=f"{done}/{total or '?'} {fps:.0f} fps")
        else:  # done
            self.bar.update(task, total=total or done or 1, completed=total or done or 1, note=f"{done}/{total or done} done")


class _FromCluster:
    """The cluster's progress (``running`` / ``done`` / ``failed``, frames from the
    workers) in :class:`_EnsureProgress`'s words: a segment done without a frame
    reported was a cache hit on the worker ("reused")."""

    def __init__(self, render: _EnsureProgress) -> None:
        self.render = render
        self.frames: dict[int, tuple[int, Optional[int]]] = {}

    def __call__(self, i: int, source: Path, state: str, done: int, total: Optional[int], fps: float) -> None:
        if state == "running":
            self.frames[i] = (done, total)
            self.render(i, source, "encoding", done, total, fps)
        elif state == "done" and i not in self.frames:
            self.render(i, source, "reused", 0, None, 0.0)
        elif state == "done":
            done, total = self.frames[i]
            self.render(i, source, "done", total or done, total, 0.0)
        # failed: the error line says it once the run ends


def ensure_proxies(
    cli: CliState,
    sources: Sequence[Path],
    session: Optional[str],
    settings: ProxySettings,
    *,
    jobs: int = DEFAULT_JOBS,
    force: bool = False,
    show: bool = True,
    follow: bool = True,
    on: Optional[ClusterChoice] = None,
) -> list[Path]:
    """The proxies of ``sources`` (made or reused, ``jobs`` at a time, or on the
    cluster ``on``), in order, with a progress bar; ``follow`` as in
    :meth:`ProxyCache.ensure` (workers follow by that default)."""
    if on is not None and force:
        raise BadInputError(None, "--force does not work with --scheduler yet: clean the proxies (scrubproxy clean), then make them")
    # Quiet: no bar at all, so that a quiet cache hit does not even import rich.progress.
    with progress_bar(True) if show else contextlib.nullcontext() as bar:
        render = _EnsureProgress(bar) if bar is not None else None
        if on is None:
            return cli.cache().ensure_many(list(sources), session, settings, jobs=jobs, force=force, follow=follow, progress=render)
        from ..cluster import ensure_on

        with on.connect() as client:
            progress = _FromCluster(render) if render is not None else None
            return ensure_on(client, sources, session, settings, cache_root=cli.cache().root, path_map=on.path_map, progress=progress)
