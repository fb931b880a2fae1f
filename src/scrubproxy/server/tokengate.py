"""The token check in front of the frame server: without the token, nothing but a JSON 401.

Used when the server listens beyond loopback. The token may come as
``Authorization: Bearer T`` (programs), as the cookie, or once as ``?token=T``
(a browser opened on ``/?token=T``), which also sets the cookie. Compared in
constant time.
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "scrubproxy_token"


class TokenGate:
    """Lets a request through only with the token: ``Authorization: Bearer T``,
    the cookie, or ``?token=T`` (which also sets the cookie, so a browser opened
    on ``/?token=T`` keeps working). Everything else gets a JSON 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | bytes | None) -> bool:
        if value is None:
            return False
        raw = value.encode() if isinstance(value, str) else value
        return hmac.compare_digest(raw, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and self._ok(auth[7:].strip()):
            await self.app(scope, receive, send)
            return
        if self._ok(_cookie(headers.get(b"cookie", b""))):
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self._ok(query.get("token")):
            await self.app(scope, receive, _with_cookie(send, self.token.decode()))
            return
        await JSONResponse({"error": "this server needs its token: Authorization: Bearer <token>, or ?token=<token> once"}, status_code=401)(scope, receive, send)


def _cookie(raw: bytes) -> str | None:
    try:
        jar = SimpleCookie(raw.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(TOKEN_COOKIE)
    return morsel.value if morsel else None


def _with_cookie(send: Send, token: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped
