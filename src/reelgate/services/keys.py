"""API keys: created once and shown once, stored as hashes, revocable; roles and limits."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import cast

from reelgate.domain.errors import AuthenticationError, Forbidden, InvalidParameter, NotFound
from reelgate.domain.quotas import Limits, Role
from reelgate.domain.request import storable_text
from reelgate.domain.task import ApiKey
from reelgate.ports import Clock, QuotaStore, TaskStore

KEY_PREFIX = "rg_"
_CACHE_LIMIT = 10_000
MAX_TEXT = 200  # characters of an owner or a key's name


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Create, list, update, revoke and authenticate bearer keys.

    Active keys are remembered for ``cache_seconds`` so that a poll costs no key
    lookup; a revocation or a change of limits here takes effect at once, one made by
    another process within ``cache_seconds``.
    """

    def __init__(self, store: TaskStore, clock: Clock, *, cache_seconds: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._active: dict[str, tuple[ApiKey, float]] = {}  # key hash -> (key, until)

    async def create(
        self, owner: str, name: str = "", *, role: Role = Role.USER, limits: Limits = Limits()
    ) -> tuple[ApiKey, str]:
        """Store a new key for ``owner``; return it and its secret (shown once).

        ``InvalidParameter`` for an empty or unstorable owner or name.
        """
        owner = _text("owner", owner)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            owner=owner,
            name=_text("name", name) if name.strip() else owner,
            key_hash=hash_key(secret),
            prefix=secret[:10],
            created_at=self._clock(),
            role=role,
            limits=_own(limits),
        )
        await self._store.add_key(key)
        return key, secret

    async def list(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        return await self._store.list_keys()

    async def get(self, key_id: str) -> ApiKey:
        """The key of id ``key_id``; ``NotFound`` when there is none."""
        key = await self._quotas.key_by_id(key_id) if storable_text(key_id) else None
        if key is None:
            raise NotFound(f"no API key with id {key_id[:80]!r}")
        return key

    async def update(
        self,
        key_id: str,
        *,
        limits: Limits | None = None,
        role: Role | None = None,
        name: str | None = None,
    ) -> ApiKey:
        """Change a key's limits, role or name (None keeps it); ``NotFound``."""
        key = await self.get(key_id)
        changed = replace(
            key,
            limits=key.limits if limits is None else _own(limits),
            role=key.role if role is None else role,
            name=key.name if name is None else _text("name", name),
        )
        stored = await self._quotas.update_key(changed)
        self._active.pop(stored.key_hash, None)
        return stored

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (again: no change); ``NotFound`` for an unknown id."""
        if not storable_text(key_id):  # no stored key has such an id (as ``get`` answers)
            raise NotFound(f"no API key with id {key_id[:80]!r}")
        key = await self._store.revoke_key(key_id, now=self._clock())
        self._active.pop(key.key_hash, None)
        return key

    async def authenticate(self, authorization: str | None) -> str:
        """The owner behind an ``Authorization: Bearer`` header, or ``AuthenticationError``."""
        return (await self.identify(authorization)).owner

    async def identify(self, authorization: str | None) -> ApiKey:
        """The active key of an ``Authorization: Bearer`` header, or ``AuthenticationError``."""
        digest = _digest(authorization)
        cached = self._active.get(digest)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        key = await self._store.key_by_hash(digest)
        if key is None:
            raise AuthenticationError("invalid API key")
        if not key.active:
            self._active.pop(digest, None)
            raise AuthenticationError("this API key has been revoked")
        if len(self._active) >= _CACHE_LIMIT:
            self._active.clear()
        self._active[digest] = (key, self._clock() + self._cache_seconds)
        return key

    async def admin(self, authorization: str | None) -> ApiKey:
        """``identify``, for an admin key only: ``Forbidden`` (``admin_required``) else."""
        key = await self.identify(authorization)
        if not key.admin:
            raise Forbidden("this route needs an admin key", code="admin_required")
        return key

    @property
    def _quotas(self) -> QuotaStore:
        return cast(QuotaStore, self._store)

    def cached_owner(self, authorization: str | None) -> str | None:
        """The owner of a key ``authenticate`` checked within ``cache_seconds``, else None.

        Synchronous, without the store, so that the hot read path pays no coroutine in
        the usual case (on None, call ``authenticate``). A missing or malformed header
        raises ``AuthenticationError`` here already.
        """
        return self._fresh(_digest(authorization))

    def _fresh(self, digest: str) -> str | None:
        cached = self._active.get(digest)
        if cached is not None and cached[1] > self._clock():
            return cached[0].owner
        return None


def _text(field: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT or not storable_text(value):
        raise InvalidParameter(f"{field} must be 1 to {MAX_TEXT} characters of text", param=field)
    return value


def _own(limits: Limits) -> Limits:
    """A key's own limits (the global queue cap is a setting, never stored on a key)."""
    return replace(limits, max_queued=None)


def _digest(authorization: str | None) -> str:
    """The hash of the key in an ``Authorization: Bearer`` header (401 when there is none)."""
    if not authorization:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthenticationError("malformed Authorization header: expected 'Bearer <key>'")
    return hash_key(token)


async def ensure_first_key(keys: KeyService, path: Path) -> str | None:
    """On a server with no keys, make an admin key and keep it in ``path`` (0600); return it.

    Returns None when keys exist already.
    """
    if await keys.list():
        return None
    _, secret = await keys.create("default", "first key", role=Role.ADMIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
