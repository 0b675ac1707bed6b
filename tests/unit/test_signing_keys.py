"""Signed links and API keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reelgate.domain.errors import AuthenticationError, Forbidden
from reelgate.services.keys import KeyService, ensure_first_key, hash_key
from reelgate.services.signing import Signer, load_secret
from reelgate.settings import Settings
from reelgate.store.memory import MemoryStore


def test_sign_and_verify() -> None:
    signer = Signer(b"s" * 32)
    url = signer.sign("http://x", "/files/videos/a.mp4", 2000)
    assert url.startswith("http://x/files/videos/a.mp4?expires=2000&signature=")
    signature = url.rsplit("=", 1)[1]
    signer.verify("/files/videos/a.mp4", "2000", signature, now=1999.0)
    with pytest.raises(Forbidden, match="expired"):
        signer.verify("/files/videos/a.mp4", "2000", signature, now=2001.0)
    with pytest.raises(Forbidden, match="does not match"):
        signer.verify("/files/videos/b.mp4", "2000", signature, now=1.0)
    with pytest.raises(Forbidden, match="does not match"):
        signer.verify("/files/videos/a.mp4", "2001", signature, now=1.0)
    with pytest.raises(Forbidden, match="not signed"):
        signer.verify("/files/videos/a.mp4", None, None, now=1.0)
    with pytest.raises(Forbidden):
        Signer(b"t" * 32).verify("/files/videos/a.mp4", "2000", signature, now=1.0)


def test_secret_is_generated_once_with_0600(tmp_path: Path) -> None:
    first = load_secret("", tmp_path)
    assert len(first) >= 32
    assert load_secret("", tmp_path) == first
    assert stat.S_IMODE((tmp_path / "signing.key").stat().st_mode) == 0o600
    assert load_secret("x" * 40, tmp_path) == b"x" * 40


async def test_keys_authenticate_and_revoke(tmp_path: Path) -> None:
    keys = KeyService(MemoryStore(), lambda: 1000.0)
    key, secret = await keys.create("alice", "laptop")
    assert key.key_hash == hash_key(secret) and secret not in repr(key)
    assert await keys.authenticate(f"Bearer {secret}") == "alice"
    assert await keys.authenticate(f"bearer  {secret}") == "alice"
    for header, message in [
        (None, "missing"),
        ("Basic abc", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer nope", "invalid"),
    ]:
        with pytest.raises(AuthenticationError, match=message):
            await keys.authenticate(header)
    await keys.revoke(key.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await keys.authenticate(f"Bearer {secret}")


async def test_first_key_only_when_there_is_none(tmp_path: Path) -> None:
    keys = KeyService(MemoryStore(), lambda: 1000.0)
    path = tmp_path / "first-api-key"
    secret = await ensure_first_key(keys, path)
    assert secret is not None and path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await keys.authenticate(f"Bearer {secret}") == "default"
    assert await ensure_first_key(keys, path) is None


async def test_active_keys_are_cached_briefly() -> None:
    store = MemoryStore()
    now = [1000.0]
    here = KeyService(store, lambda: now[0], cache_seconds=1.0)
    elsewhere = KeyService(store, lambda: now[0], cache_seconds=1.0)  # another process
    key, secret = await here.create("alice")
    assert await elsewhere.authenticate(f"Bearer {secret}") == "alice"
    await here.revoke(key.id)
    with pytest.raises(AuthenticationError):  # this process forgets at once
        await here.authenticate(f"Bearer {secret}")
    assert await elsewhere.authenticate(f"Bearer {secret}") == "alice"  # still cached
    now[0] += 1.5
    with pytest.raises(AuthenticationError, match="revoked"):
        await elsewhere.authenticate(f"Bearer {secret}")


def test_production_refuses_the_examples_placeholder_secret(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path, "env": "production", "public_url": "https://v.example.com"}
    with pytest.raises(ValueError, match="placeholder"):
        Settings(**base, signing_secret="change-me-to-a-random-string-of-at-least-32-chars")
    Settings(**base, signing_secret="x" * 40)  # a real one passes
