"""Dashboard sessions: a signed cookie instead of the key, and CSRF tokens for forms.

A browser signs in once with an API key; afterwards it holds only the session cookie
``reelgate_session`` (HttpOnly, SameSite=Strict, Path=/dashboard, Secure when served
over https). Its value is ``<key hash>.<issued>.<nonce>.<mac>``: the SHA-256 of the key
(what the database stores, never the key), when it was issued, a random nonce, and an
HMAC-SHA256 over the three under the server's signing secret (``signing.key`` in the
data folder, or ``REELGATE_SIGNING_SECRET``). The MAC's input starts with
``dashboard-`` where a signed link's starts with ``/``, so neither can pass for the other.

Each request checks the MAC and the age (``SESSION_SECONDS``), then reads the key by its
hash: a revoked key's sessions end at once, in every process.

Every form POST carries ``csrf``, an HMAC of the session's nonce (one token per session,
checked in constant time). The sign-in form, before there is a session, carries an HMAC
of the nonce in a short-lived ``reelgate_signin`` cookie (a signed double submit).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from reelgate.domain.errors import Forbidden
from reelgate.domain.task import ApiKey
from reelgate.ports import Clock, TaskStore
from reelgate.services.signing import Signer

PATH = "/dashboard"
COOKIE = "reelgate_session"
SIGNIN_COOKIE = "reelgate_signin"
SESSION_SECONDS = 12 * 3600
SIGNIN_SECONDS = 3600
_VALUE = re.compile(r"([0-9a-f]{64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its key (as stored now) and its form token."""

    key: ApiKey
    csrf: str

    @property
    def owner(self) -> str:
        return self.key.owner


class Sessions:
    """Issue and check session cookies and CSRF tokens."""

    def __init__(self, signer: Signer, store: TaskStore, clock: Clock) -> None:
        self._signer = signer
        self._store = store
        self._clock = clock

    def issue(self, key: ApiKey) -> str:
        """A new session cookie's value for ``key``."""
        issued = int(self._clock())
        nonce = secrets.token_urlsafe(16)
        return f"{key.key_hash}.{issued}.{nonce}.{self._mac(key.key_hash, nonce, issued)}"

    async def open(self, value: str | None) -> Session | None:
        """The session of a cookie value; None when absent, forged, expired or revoked."""
        match = _VALUE.fullmatch(value or "")
        if match is None:
            return None
        key_hash, issued_text, nonce, mac = match.groups()
        issued = int(issued_text)
        expected = self._mac(key_hash, nonce, issued)
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            return None
        if not issued <= self._clock() < issued + SESSION_SECONDS:
            return None
        key = await self._store.key_by_hash(key_hash)
        if key is None or not key.active:
            return None
        return Session(key, self._token("dashboard-csrf", nonce))

    def check_csrf(self, session: Session, token: object) -> None:
        """Raise ``Forbidden`` unless ``token`` is the session's form token."""
        if not isinstance(token, str) or not hmac.compare_digest(
            session.csrf.encode(), token.encode()
        ):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")

    def signin_nonce(self, request: Request) -> str:
        """The sign-in cookie's nonce if it is well formed, else a new one."""
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        return nonce if _NONCE.fullmatch(nonce) else secrets.token_urlsafe(16)

    def signin_token(self, nonce: str) -> str:
        """The sign-in form's token for the nonce in its cookie."""
        return self._token("dashboard-signin", nonce)

    def check_signin(self, request: Request, token: object) -> None:
        """Raise ``Forbidden`` unless ``token`` matches the sign-in cookie."""
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        expected = self.signin_token(nonce) if _NONCE.fullmatch(nonce) else ""
        if not expected or not isinstance(token, str):
            raise Forbidden("the sign-in form expired; reload the page")
        if not hmac.compare_digest(expected.encode(), token.encode()):
            raise Forbidden("the sign-in form expired; reload the page")

    def _mac(self, key_hash: str, nonce: str, issued: int) -> str:
        return self._signer.signature(f"dashboard-session:{key_hash}:{nonce}", issued)

    def _token(self, purpose: str, nonce: str) -> str:
        return self._signer.signature(f"{purpose}:{nonce}", 0)


def sessions(request: Request) -> Sessions:
    """The ``Sessions`` of the application that serves ``request``."""
    state = request.app.state
    return Sessions(state.signer, state.store, state.clock)


def secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: the request, or the public URL, is https."""
    public_url: str = request.app.state.settings.public_url
    return request.url.scheme == "https" or public_url.startswith("https://")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """Set one of the dashboard's cookies, with its flags."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        secure=secure(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    """Remove one of the dashboard's cookies."""
    response.delete_cookie(
        name, path=PATH, secure=secure(request), httponly=True, samesite="strict"
    )
