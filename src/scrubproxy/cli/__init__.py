"""The ``scrubproxy`` command."""

from __future__ import annotations

import os
import sys


def run() -> None:
    """Console-script entry point. ``scrubproxy --version`` alone answers before
    the command framework (typer, click, rich) is imported: it is the command
    scripts call most to check what is installed."""
    # scrubproxy does no linear algebra: without this, NumPy's OpenBLAS starts a
    # thread per core at import, 0.07 s of CPU that an encode's decoder wants.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.argv[1:] == ["--version"]:
        from .._version import __version__

        print(f"scrubproxy {__version__}")
        return
    from .main import run as run_app

    run_app()


def __getattr__(name: str) -> object:
    if name == "app":  # the typer app, built on first use
        from .main import app

        return app
    raise AttributeError(f"module 'scrubproxy.cli' has no attribute {name!r}")


__all__ = ["app", "run"]
