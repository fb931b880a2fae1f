"""The ``scrubproxy`` command."""

from .main import app, run

__all__ = ["app", "run"]
