"""HMAC-signed, expiring links to files the API serves itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from reelgate.domain.errors import Forbidden

_EXPIRES = re.compile(r"[0-9]{1,12}")


class Signer:
    """Signs ``path`` + ``expires`` with HMAC-SHA256 and checks it in constant time."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 bytes")
        # Keyed once: each signature copies this state instead of keying HMAC anew.
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def signature(self, path: str, expires: int) -> str:
        mac = self._keyed.copy()
        mac.update(f"{path}\n{expires}".encode())
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def sign(self, base_url: str, path: str, expires: int) -> str:
        """An absolute URL to ``path`` on ``base_url`` that is valid until ``expires``.

        The query is written by hand: an integer and URL-safe base64 need no quoting,
        so it is exactly what ``urlencode`` would make, without its cost on every poll.
        """
        return f"{base_url}{path}?expires={expires}&signature={self.signature(path, expires)}"

    def verify(self, path: str, expires: str | None, signature: str | None, now: float) -> None:
        """Raise ``Forbidden`` unless the signature matches and has not expired."""
        if not expires or not signature or not _EXPIRES.fullmatch(expires):
            raise Forbidden("the link is not signed")
        expected = self.signature(path, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("the link's signature does not match")
        if int(expires) < now:
            raise Forbidden("the link has expired; fetch the task again for a fresh video_url")


def load_secret(configured: str, data_dir: Path) -> bytes:
    """The configured secret, else one generated once into ``data_dir/signing.key`` (0600)."""
    if configured:
        return configured.encode()
    path = data_dir / "signing.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole to a temporary file, then linked into place: a process that
        # starts at the same moment, or after a crash, never reads a partial key.
        staged = data_dir / f".signing.key.{secrets.token_hex(6)}"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_urlsafe(48).encode())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staged, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        finally:
            staged.unlink()
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no valid signing key; delete it to make a new one")
    return secret
