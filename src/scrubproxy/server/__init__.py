"""The HTTP frame server and the scrubber page it serves."""

from .app import create_app

__all__ = ["create_app"]
