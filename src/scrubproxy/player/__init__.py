"""mpv on the proxies: a frame-exact :class:`Player`, its EDL timeline, the IPC client and the on-screen script."""

from .player import Player, lua_script, session_segments

__all__ = ["Player", "lua_script", "session_segments"]
