"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...) through boto3.

Every blocking boto3 call runs in ``asyncio.to_thread``; one boto3 client is
shared by all threads (boto3 clients are thread-safe, sessions are not, so the
session is only used here, in the constructor). An S3 PUT is atomic: an object,
multipart or not, becomes visible whole or not at all, so ``put_file`` needs no
staging. Outputs go to the API's clients as presigned GET URLs (SigV4), never
through the API.

botocore's errors become the domain tree: a missing object is ``NotFound``;
connection failures, timeouts, 5xx and every other refusal of the storage
(access denied, missing bucket) are ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from reelgate.domain.errors import InvalidRequest, NotFound, ReelgateError, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

MiB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 limit

AddressingStyle = Literal["path", "virtual", "auto"]
_STYLES: dict[str, AddressingStyle] = {"path": "path", "virtual": "virtual", "auto": "auto"}
_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/optional/prefix`` into the bucket and the key prefix.

    The prefix is empty or ends with ``/``. Raises ``ValueError`` for anything else.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"invalid S3 storage URL {url!r}: use s3://bucket/optional/prefix")
    prefix = parts.path.strip("/")
    if prefix and (not _KEY.match(prefix) or ".." in prefix.split("/")):
        raise ValueError(f"invalid key prefix {prefix!r} in storage URL {url!r}")
    return parts.netloc, f"{prefix}/" if prefix else ""


def content_type(key: str) -> str:
    """The ``Content-Type`` stored with ``key``, from its extension."""
    return _CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


def storage_error(exc: Exception, what: str) -> ReelgateError:
    """The domain error for a boto3/botocore failure while doing ``what``."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING:
            return NotFound(f"{what}: not found")
        return Unavailable(f"storage refused {what}: {code or status} {error.get('Message', '')}")
    return Unavailable(f"storage unreachable for {what}: {exc}")


class S3Blobs:
    """``BlobStore`` in an S3 bucket, under the key prefix of an ``s3://`` URL.

    ``url`` is ``s3://bucket/optional/prefix``. ``endpoint_url`` points at an
    S3-compatible server (MinIO, ...); without it boto3 talks to AWS.
    ``region``, ``access_key_id`` and ``secret_access_key`` fall back to boto3's
    default chain (environment, shared files, instance role) when absent.
    ``addressing_style`` is ``"path"`` or ``"virtual"``; by default path when an
    endpoint is given, else boto3's choice. ``public_endpoint_url`` signs the
    download URLs for another host than the one the gateway uses (an internal
    service name versus the address clients reach). Files larger than
    ``multipart_threshold`` are uploaded in parts of ``multipart_chunksize``
    (S3 needs at least 5 MiB per part), ``max_concurrency`` parts at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str | None = None,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int = 8 * MiB,
        max_concurrency: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        if bool(access_key_id) != bool(secret_access_key):
            raise ValueError("give both the S3 access key id and the secret access key, or neither")
        style = _STYLES.get(addressing_style or ("path" if endpoint_url else "auto"))
        if style is None:
            raise ValueError(f"addressing_style must be path or virtual, not {addressing_style!r}")
        if multipart_chunksize < 5 * MiB:
            raise ValueError("multipart_chunksize must be at least 5 MiB (the S3 minimum part)")
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or None,
        )
        self.region = session.region_name or "us-east-1"

        def client(endpoint: str | None, attempts: int, connect: float, read: float) -> S3Client:
            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": style},
                retries={"max_attempts": attempts, "mode": "standard"},
                connect_timeout=connect,
                read_timeout=read,
                max_pool_connections=max(32, 4 * max_concurrency),  # >= the thread pool
            )
            return session.client(
                "s3", endpoint_url=endpoint or None, region_name=self.region, config=config
            )

        self._client = client(endpoint_url, max_attempts, connect_timeout, read_timeout)
        # One try and short timeouts, so that a readiness probe answers quickly.
        self._probe = client(endpoint_url, 1, min(connect_timeout, 2.0), min(read_timeout, 5.0))
        self._signer = (
            client(public_endpoint_url, 1, connect_timeout, read_timeout)
            if public_endpoint_url
            else self._client
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )

    def object_key(self, key: str) -> str:
        """The bucket key of blob ``key``: the URL's prefix, then ``key``."""
        if not _KEY.match(key) or ".." in key.split("/"):
            raise InvalidRequest(f"invalid blob key {key!r}")
        return self.prefix + key

    def local_path(self, key: str) -> Path | None:
        """Always None: S3 objects are not local files."""
        return None

    def presigned_url(self, key: str, *, expires_in: int) -> str | None:
        """A SigV4 presigned GET URL for ``key``, valid ``expires_in`` seconds (1 s to 7 days).

        Signing is local computation: no request is made, and a URL is returned
        even for a key that does not exist (the download then gets 404).
        """
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds")
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        try:
            return self._signer.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, f"signing {key!r}") from exc

    async def put_file(self, key: str, path: Path) -> None:
        """Upload ``path`` (multipart when large) under ``key``, then delete ``path``."""
        target = self.object_key(key)
        extra = {"ContentType": content_type(key)}

        def upload() -> None:
            self._client.upload_file(
                str(path), self.bucket, target, ExtraArgs=extra, Config=self._transfer
            )
            path.unlink()

        await self._call(upload, f"upload of {key!r}")

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in one PUT."""
        target = self.object_key(key)

        def put() -> None:
            self._client.put_object(
                Bucket=self.bucket, Key=target, Body=data, ContentType=content_type(key)
            )

        await self._call(put, f"upload of {key!r}")

    async def get_bytes(self, key: str) -> bytes:
        """The content of ``key``; raises ``NotFound`` when there is no such object."""
        target = self.object_key(key)

        def get() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=target)
            with response["Body"] as body:
                return body.read()

        return await self._call(get, f"blob {key!r}")

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        target = self.object_key(key)

        def head() -> bool:
            self._client.head_object(Bucket=self.bucket, Key=target)
            return True

        try:
            return await self._call(head, f"blob {key!r}")
        except NotFound:
            return False

    async def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing object is not an error."""
        target = self.object_key(key)

        def delete() -> None:
            self._client.delete_object(Bucket=self.bucket, Key=target)

        await self._call(delete, f"deletion of {key!r}")

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the bucket answers a HEAD (one try, short timeouts)."""

        def head() -> None:
            self._probe.head_bucket(Bucket=self.bucket)

        try:
            await self._call(head, f"bucket {self.bucket!r}")
        except NotFound as exc:
            raise Unavailable(f"bucket {self.bucket!r} does not exist") from exc

    async def close(self) -> None:
        """Close the clients' connection pools."""
        for client in {id(c): c for c in (self._client, self._probe, self._signer)}.values():
            client.close()

    @staticmethod
    async def _call(fn: Callable[[], T], what: str) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise storage_error(exc, what) from exc
        except OSError as exc:
            raise Unavailable(f"storage: {what}: {exc}") from exc
