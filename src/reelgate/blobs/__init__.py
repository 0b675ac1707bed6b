"""Blob stores: local files (the embedded default), an in-memory fake, S3."""

from __future__ import annotations

from pathlib import Path

from reelgate.ports import BlobStore


def open_blobs(url: str) -> BlobStore:
    """Return the blob store for ``url`` (``file:///path``, ``memory:``)."""
    if url.startswith("file://"):
        from reelgate.blobs.local import LocalBlobs

        return LocalBlobs(Path(url.removeprefix("file://")))
    if url == "memory:":
        from reelgate.blobs.memory import MemoryBlobs

        return MemoryBlobs()
    raise ValueError(f"unsupported storage URL {url!r}: use file:///path or memory:")
