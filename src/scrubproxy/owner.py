"""Who is writing: a token naming this process on this host, and whether the
writer a token names is still at work.

Temporary files of an encode and the record of a live proxy carry their
writer's token, so that anyone can tell a writer at work from one that was
killed: on the same host by its pid, on another host (a shared folder) only by
how long ago it last wrote.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time

#: What a writer's token may hold (host names may hold dots; tokens may not).
TOKEN_CHARS = r"[A-Za-z0-9_-]+"
#: A writer on another host counts as gone after this long without writing.
ABANDONED_AFTER = 3600.0


def host_token() -> str:
    """This host's name as tokens spell it: only ``[A-Za-z0-9_]``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:32] or "host"


def new_token() -> str:
    """A token for a new writer in this process: ``<host>_<pid>_<random>``."""
    return f"{host_token()}_{os.getpid()}_{secrets.token_hex(4)}"


def alive(token: str, last_write: float) -> bool:
    """Is the writer of ``token`` still at work? Same host: its pid lives.
    Other host: it wrote (``last_write``, a wall-clock time) within ``ABANDONED_AFTER``."""
    parts = token.rsplit("_", 2)
    if len(parts) == 3 and parts[0] == host_token() and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - last_write < ABANDONED_AFTER
