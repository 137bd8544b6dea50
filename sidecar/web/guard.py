"""Who may read: an ASGI middleware in front of the viewer. The Host must be one the viewer
was bound as (DNS rebinding), and every request must carry the token, in the URL once
(then kept in an HttpOnly, SameSite=Strict cookie) or in that cookie. Every response gets
the headers that keep a transcript from running script, being framed or being cached."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts only from the viewer's own file, no inline script or handler, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
NO_TOKEN = "forbidden: open the viewer with the URL it printed at start-up (it holds the token)\n"


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The Host headers to accept for a viewer bound to `host`:`port`; None: any (bound to
    every address, where the token alone guards)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    names = {"localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host}
    return frozenset(f"{name.lower()}:{port}" for name in names)


class Guard:
    def __init__(self, app: ASGIApp, token: str, hosts: frozenset[str] | None, cookie: str) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        refusal = self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, secured)
        else:
            await self.app(scope, receive, secured)

    def _check(self, scope: Scope) -> Response | None:
        """None if the request may go on; else the response to give instead."""
        headers = Headers(scope=scope)
        if self.hosts is not None and headers.get("host", "").lower() not in self.hosts:
            return PlainTextResponse("forbidden: unexpected Host header\n", status_code=403)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = next((value for key, value in query if key == "token"), None)
        if offered is not None:
            if not self._valid(offered):
                return PlainTextResponse(NO_TOKEN, status_code=403)
            # The token leaves the address bar (and the history) at once; the cookie keeps it.
            rest = urlencode([(key, value) for key, value in query if key != "token"])
            # One leading slash: "//evil.com" or a backslash after the slash leads to another host.
            path = "/" + scope["path"].lstrip("/\\")
            response = RedirectResponse(path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.cookie, self.token.decode(), httponly=True, samesite="strict", path="/")
            return response
        cookie = _cookie(headers, self.cookie)
        if cookie is None or not self._valid(cookie):
            return PlainTextResponse(NO_TOKEN, status_code=403)
        return None

    def _valid(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.token)


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.getlist("cookie"):
        for pair in header.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                return value
    return None
