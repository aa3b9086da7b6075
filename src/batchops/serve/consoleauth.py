"""Who uses the console, and what a browser may ask of the server.

With `--auth none` (loopback only) the console shows every account's jobs and needs no
sign-in. With `--auth sigv4` a browser cannot sign requests, so the console has a
sign-in form: the operator gives one of the server's keys (access key id and secret,
checked in constant time against the --keys file, never stored), and gets a session
cookie (random, HttpOnly, SameSite=Strict, in this server's memory only, 12 hours). The
console then shows that key's account only, and its actions reach the s3control API as
that account.

Against cross-site requests (`CsrfGuard`, ASGI middleware around the whole app):

- with --auth none, the console and a browser's state-changing requests answer only
  at a loopback Host name (a rebound DNS name is refused);
- a state-changing request sent by a browser (it names an Origin or Sec-Fetch-Site)
  must come from the server's own origin, and carry the console's token in
  X-Batchops-Csrf (derived from the session; a page of another origin can neither read
  it nor send a custom header without a CORS preflight, which the server never grants);
  the sign-in and sign-out forms need the same origin only;
- an API request with no signature but with a session and its token is passed on with
  X-Batchops-Console-Account naming the session's account (serve/app.py takes the
  caller's account from it); that header is removed from every request that arrives.

SDKs and the CLI send no Origin and are left to the API's own authorisation.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

CSRF_HEADER = "X-Batchops-Csrf"
#: Set by CsrfGuard only (stripped from what arrives): the console session's account.
CONSOLE_ACCOUNT_HEADER = "x-batchops-console-account"
COOKIE = "batchops_session"
SESSION_SECONDS = 12 * 3600
API_PREFIX = "/v20180820/"
LOGIN_PATH = "/console/login"
LOGOUT_PATH = "/console/logout"


def loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (localhost, 127.x, [::1])."""
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else \
        host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, its name compared without case."""
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    for part in (header(headers, "cookie") or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class ConsoleAuth:
    """Sessions and tokens of one server's console. `keys`: the server's SigV4 keys by
    access key id (objects with access_key_id, secret, account_id), or None for
    --auth none."""

    def __init__(self, keys: Mapping[str, Any] | None = None, token: str | None = None) -> None:
        self.keys = keys
        self.secret = token or secrets.token_urlsafe(32)
        self._sessions: dict[str, tuple[str, float]] = {}  # id -> (account, expiry)
        self._lock = threading.Lock()

    @property
    def signing_in(self) -> bool:
        """Whether the console needs a sign-in (--auth sigv4)."""
        return self.keys is not None

    def session(self, headers: Mapping[str, str]) -> str | None:
        """The session id of the request's cookie, if it is a live session."""
        sid = _cookie(headers, COOKIE)
        if not sid:
            return None
        with self._lock:
            found = self._sessions.get(sid)
            if found is None:
                return None
            if found[1] < time.time():
                del self._sessions[sid]
                return None
        return sid

    def host_refused(self, headers: Mapping[str, str]) -> str | None:
        """With --auth none, a browser must name the server by a loopback address: a
        page that had its own name resolved to 127.0.0.1 (DNS rebinding) would
        otherwise be the console's origin. None when the Host is fine."""
        host = header(headers, "host") or ""
        if self.signing_in or loopback_host(host):
            return None
        return (f"the console answers at a loopback address (http://127.0.0.1:PORT/), "
                f"not at {host!r}")

    def account(self, headers: Mapping[str, str]) -> str | None:
        """The account whose jobs the request may see: "" (every account) with --auth
        none, the session's with a sign-in, None when it must sign in first."""
        if not self.signing_in:
            return ""
        sid = self.session(headers)
        if sid is None:
            return None
        with self._lock:
            found = self._sessions.get(sid)
        return found[0] if found else None

    def token(self, headers: Mapping[str, str]) -> str:
        """The anti-CSRF token of the request's session (the server's without one)."""
        sid = self.session(headers) if self.signing_in else None
        if sid is None:
            return self.secret
        return hmac.new(self.secret.encode(), sid.encode(), "sha256").hexdigest()

    def csrf_ok(self, headers: Mapping[str, str]) -> bool:
        """Whether X-Batchops-Csrf carries this request's token."""
        given = header(headers, CSRF_HEADER) or ""
        if self.signing_in and self.session(headers) is None:
            return False
        return hmac.compare_digest(given.encode(), self.token(headers).encode())

    def sign_in(self, access_key_id: str, secret: str) -> tuple[str, str] | None:
        """(session id, account) for a key of the server and its secret; None else."""
        keys = self.keys or {}
        key = keys.get(access_key_id)
        # Compared in constant time, against a dummy when the id is unknown.
        expected = key.secret if key is not None else secrets.token_urlsafe(30)
        if not hmac.compare_digest(secret.encode(), expected.encode()) or key is None:
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            for old in [s for s, (_, end) in self._sessions.items() if end < now]:
                del self._sessions[old]
            self._sessions[sid] = (key.account_id, now + SESSION_SECONDS)
        return sid, key.account_id

    def sign_out(self, headers: Mapping[str, str]) -> None:
        sid = self.session(headers)
        if sid is not None:
            with self._lock:
                self._sessions.pop(sid, None)

    @staticmethod
    def cookie(sid: str, max_age: int = SESSION_SECONDS) -> str:
        return f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


class CsrfGuard:
    """ASGI middleware (see the module's docstring)."""

    def __init__(self, app: Any, auth: ConsoleAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = [(k, v) for k, v in scope.get("headers") or ()
               if k.lower() != CONSOLE_ACCOUNT_HEADER.encode()]
        scope = dict(scope, headers=raw)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
            why = self.refusal(headers, scope.get("path", ""))
            if why is not None:
                await self._refuse(send, why)
                return
            if (str(scope.get("path", "")).startswith(API_PREFIX) and self.auth.signing_in
                    and "authorization" not in headers and self.auth.csrf_ok(headers)):
                account = self.auth.account(headers) or ""
                scope["headers"] = [*raw, (CONSOLE_ACCOUNT_HEADER.encode(),
                                           account.encode("latin-1"))]
        await self.app(scope, receive, send)

    def refusal(self, headers: Mapping[str, str], path: str) -> str | None:
        """Why a state-changing request with these (lower-case) headers is refused; None
        when it may go on."""
        origin = headers.get("origin")
        if origin is None and "sec-fetch-site" not in headers:
            return None  # not a browser
        host = headers.get("host", "")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != host:
            return f"a request from {origin} may not change jobs here (cross-site)"
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "a cross-site request may not change jobs here"
        refused = self.auth.host_refused(headers)
        if refused is not None:
            return refused
        if path in (LOGIN_PATH, LOGOUT_PATH):  # forms: the same origin is enough
            return None
        if not self.auth.csrf_ok(headers):
            return f"a browser's request must carry the console's {CSRF_HEADER} header"
        return None

    @staticmethod
    async def _refuse(send: Any, why: str) -> None:
        from batchops.serve.restxml import error_body

        request_id = secrets.token_hex(8).upper()
        body = error_body("AccessDenied", why, request_id)
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/xml"),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-amz-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": body})


__all__ = ["CONSOLE_ACCOUNT_HEADER", "CSRF_HEADER", "ConsoleAuth", "CsrfGuard", "header"]
