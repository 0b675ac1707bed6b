"""An in-memory ``BlobStore``: the fake of the port, for unit tests."""

from __future__ import annotations

from pathlib import Path

from reelgate.domain.errors import NotFound


class MemoryBlobs:
    """``BlobStore`` in a dictionary."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, *, expires_in: int) -> str | None:
        return f"memory://{key}?expires_in={expires_in}"

    async def put_file(self, key: str, path: Path) -> None:
        self.blobs[key] = path.read_bytes()
        path.unlink()

    async def put_bytes(self, key: str, data: bytes) -> None:
        self.blobs[key] = data

    async def get_bytes(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise NotFound(f"no blob {key!r}") from None

    async def exists(self, key: str) -> bool:
        return key in self.blobs

    async def delete(self, key: str) -> None:
        self.blobs.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
