"""API keys: created once and shown once, stored as hashes, revocable."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from reelgate.domain.errors import AuthenticationError
from reelgate.domain.task import ApiKey
from reelgate.ports import Clock, TaskStore

KEY_PREFIX = "rg_"
_CACHE_LIMIT = 10_000


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Create, list, revoke and authenticate bearer keys.

    Active keys are remembered for ``cache_seconds`` so that a poll costs no key
    lookup; a revocation here takes effect at once, one made by another process
    within ``cache_seconds``.
    """

    def __init__(self, store: TaskStore, clock: Clock, *, cache_seconds: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._active: dict[str, tuple[str, float]] = {}  # key hash -> (owner, until)

    async def create(self, owner: str, name: str = "") -> tuple[ApiKey, str]:
        """Store a new key for ``owner``; return it and its secret (shown once)."""
        if not owner.strip():
            raise ValueError("a key needs an owner")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            owner=owner.strip(),
            name=name or owner.strip(),
            key_hash=hash_key(secret),
            prefix=secret[:10],
            created_at=self._clock(),
        )
        await self._store.add_key(key)
        return key, secret

    async def list(self) -> list[ApiKey]:
        return await self._store.list_keys()

    async def revoke(self, key_id: str) -> ApiKey:
        key = await self._store.revoke_key(key_id, now=self._clock())
        self._active.pop(key.key_hash, None)
        return key

    async def authenticate(self, authorization: str | None) -> str:
        """The owner behind an ``Authorization: Bearer`` header, or ``AuthenticationError``."""
        digest = _digest(authorization)
        owner = self._fresh(digest)
        if owner is not None:
            return owner
        key = await self._store.key_by_hash(digest)
        if key is None:
            raise AuthenticationError("invalid API key")
        if not key.active:
            self._active.pop(digest, None)
            raise AuthenticationError("this API key has been revoked")
        if len(self._active) >= _CACHE_LIMIT:
            self._active.clear()
        self._active[digest] = (key.owner, self._clock() + self._cache_seconds)
        return key.owner

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
            return cached[0]
        return None


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
    """On a server with no keys, make one and keep it in ``path`` (0600); return it.

    Returns None when keys exist already.
    """
    if await keys.list():
        return None
    _, secret = await keys.create("default", "first key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
