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


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Create, list, revoke and authenticate bearer keys."""

    def __init__(self, store: TaskStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

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
        return await self._store.revoke_key(key_id, now=self._clock())

    async def authenticate(self, authorization: str | None) -> str:
        """The owner behind an ``Authorization: Bearer`` header, or ``AuthenticationError``."""
        if not authorization:
            raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise AuthenticationError("malformed Authorization header: expected 'Bearer <key>'")
        key = await self._store.key_by_hash(hash_key(token))
        if key is None:
            raise AuthenticationError("invalid API key")
        if not key.active:
            raise AuthenticationError("this API key has been revoked")
        return key.owner


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
