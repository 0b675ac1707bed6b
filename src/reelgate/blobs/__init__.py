"""Blob stores: local files (the embedded default), an in-memory fake, S3."""

from __future__ import annotations

from pathlib import Path

from reelgate.ports import BlobStore


def open_blobs(
    url: str,
    *,
    endpoint_url: str | None = None,
    public_endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    addressing_style: str | None = None,
) -> BlobStore:
    """Return the blob store for ``url`` (``file:///path``, ``s3://bucket/prefix``, ``memory:``).

    The keyword options apply to ``s3://`` only (see ``S3Blobs``); empty strings
    count as absent, so unset settings can be passed as they are.
    """
    if url.startswith("file://"):
        from reelgate.blobs.local import LocalBlobs

        return LocalBlobs(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from reelgate.blobs.s3 import S3Blobs

        return S3Blobs(
            url,
            endpoint_url=endpoint_url or None,
            public_endpoint_url=public_endpoint_url or None,
            region=region or None,
            access_key_id=access_key_id or None,
            secret_access_key=secret_access_key or None,
            addressing_style=addressing_style or None,
        )
    if url == "memory:":
        from reelgate.blobs.memory import MemoryBlobs

        return MemoryBlobs()
    raise ValueError(
        f"unsupported storage URL {url!r}: use file:///path, s3://bucket/prefix or memory:"
    )
