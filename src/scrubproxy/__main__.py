"""``python -m scrubproxy``: the ``scrubproxy`` command."""

from .cli import run

run()
