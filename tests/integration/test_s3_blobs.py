"""S3Blobs over real HTTP against the loopback S3-compatible server of ``tests.s3``."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from reelgate.blobs import open_blobs
from reelgate.blobs.s3 import MiB, S3Blobs, parse_s3_url, storage_error
from reelgate.domain.errors import InvalidRequest, NotFound, Unavailable
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, aws_environ, s3_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def aws_env() -> Iterator[None]:
    """Dummy credentials, no shared config files, no EC2 metadata look-ups."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in aws_environ().items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def endpoint(aws_env: None) -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture(scope="module")
def admin(endpoint: str) -> Any:
    """A plain boto3 client, to look at the bucket behind the adapter's back."""
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=config)


@pytest.fixture
def bucket(admin: Any) -> str:
    name = "reelgate-" + secrets.token_hex(6)
    admin.create_bucket(Bucket=name)
    return name


@pytest.fixture
def blobs(endpoint: str, bucket: str) -> Iterator[S3Blobs]:
    store = S3Blobs(
        f"s3://{bucket}/pre/fix",
        endpoint_url=endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    yield store
    asyncio.run(store.close())


def dead_endpoint() -> str:
    """A loopback URL where nothing listens (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def http() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


async def test_put_file_uploads_with_content_type_and_consumes_the_file(
    blobs: S3Blobs, admin: Any, tmp_path: Path
) -> None:
    source = tmp_path / "out.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42 small video")
    await blobs.put_file("videos/task_1.mp4", source)
    assert not source.exists()
    head = admin.head_object(Bucket=blobs.bucket, Key="pre/fix/videos/task_1.mp4")
    assert head["ContentType"] == "video/mp4"
    assert await blobs.get_bytes("videos/task_1.mp4") == b"\x00\x00\x00\x18ftypmp42 small video"


async def test_put_file_goes_multipart_above_the_threshold(
    blobs: S3Blobs, admin: Any, tmp_path: Path
) -> None:
    data = os.urandom(11 * MiB + 123)
    source = tmp_path / "big.mp4"
    source.write_bytes(data)
    await blobs.put_file("videos/big.mp4", source)
    assert not source.exists()
    head = admin.head_object(Bucket=blobs.bucket, Key="pre/fix/videos/big.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/mp4"
    assert await blobs.get_bytes("videos/big.mp4") == data


async def test_put_and_get_bytes(blobs: S3Blobs, admin: Any) -> None:
    await blobs.put_bytes("inputs/task_2.png", b"\x89PNG picture")
    assert await blobs.get_bytes("inputs/task_2.png") == b"\x89PNG picture"
    head = admin.head_object(Bucket=blobs.bucket, Key="pre/fix/inputs/task_2.png")
    assert head["ContentType"] == "image/png"
    await blobs.put_bytes("inputs/task_2.png", b"replaced")
    assert await blobs.get_bytes("inputs/task_2.png") == b"replaced"


async def test_exists_and_delete(blobs: S3Blobs) -> None:
    assert not await blobs.exists("videos/x.mp4")
    await blobs.put_bytes("videos/x.mp4", b"x")
    assert await blobs.exists("videos/x.mp4")
    await blobs.delete("videos/x.mp4")
    assert not await blobs.exists("videos/x.mp4")
    await blobs.delete("videos/x.mp4")  # deleting again is fine


async def test_missing_key_is_not_found(blobs: S3Blobs) -> None:
    with pytest.raises(NotFound) as info:
        await blobs.get_bytes("videos/none.mp4")
    assert isinstance(info.value.__cause__, ClientError)


async def test_concurrent_puts_share_one_client(blobs: S3Blobs) -> None:
    keys = [f"inputs/k{i}.bin" for i in range(24)]
    await asyncio.gather(*(blobs.put_bytes(key, key.encode()) for key in keys))
    assert await asyncio.gather(*(blobs.get_bytes(key) for key in keys)) == [
        key.encode() for key in keys
    ]


async def test_invalid_keys_are_refused(blobs: S3Blobs) -> None:
    for key in ("../etc/passwd", "/abs", "a/../b", "a b", ""):
        with pytest.raises(InvalidRequest):
            await blobs.put_bytes(key, b"x")
    assert blobs.local_path("videos/a.mp4") is None


async def test_ping(blobs: S3Blobs, endpoint: str) -> None:
    await blobs.ping()
    missing = S3Blobs("s3://no-such-bucket-here", endpoint_url=endpoint)
    with pytest.raises(Unavailable, match="does not exist"):
        await missing.ping()


async def test_unreachable_storage_is_unavailable(bucket: str) -> None:
    store = S3Blobs(f"s3://{bucket}", endpoint_url=dead_endpoint(), max_attempts=1)
    with pytest.raises(Unavailable) as info:
        await store.ping()
    assert isinstance(info.value.__cause__, EndpointConnectionError)
    with pytest.raises(Unavailable):
        await store.get_bytes("videos/a.mp4")
    with pytest.raises(Unavailable):
        await store.put_bytes("videos/a.mp4", b"x")


async def test_presigned_get_downloads_the_exact_bytes(blobs: S3Blobs, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "v.mp4"
    source.write_bytes(data)
    await blobs.put_file("videos/v.mp4", source)
    url = blobs.presigned_url("videos/v.mp4", expires_in=900)
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert urlsplit(url).path == f"/{blobs.bucket}/pre/fix/videos/v.mp4"
    with http() as client:
        response = client.get(url)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "video/mp4"

        signature = query["X-Amz-Signature"][0]
        forged = "0" if signature[0] != "0" else "1"
        tampered = url.replace(signature, forged + signature[1:])
        assert client.get(tampered).status_code == 403
        other_key = url.replace("/videos/v.mp4", "/videos/w.mp4")
        assert client.get(other_key).status_code == 403


async def test_presigned_url_for_a_public_endpoint(endpoint: str, bucket: str) -> None:
    public = endpoint.replace("127.0.0.1", "localhost")
    store = S3Blobs(f"s3://{bucket}", endpoint_url=endpoint, public_endpoint_url=public)
    await store.put_bytes("videos/p.mp4", b"public")
    url = store.presigned_url("videos/p.mp4", expires_in=60)
    assert url is not None and url.startswith(f"{public}/{bucket}/videos/p.mp4?")
    with http() as client:
        response = client.get(url)
        assert (response.status_code, response.content) == (200, b"public")
        # the host is signed: the same URL sent to another host is refused
        assert client.get(url.replace(public, endpoint)).status_code == 403


def test_presigned_lifetime_is_bounded(blobs: S3Blobs) -> None:
    for seconds in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            blobs.presigned_url("videos/a.mp4", expires_in=seconds)


def test_open_blobs_reads_s3_urls(endpoint: str) -> None:
    store = open_blobs("s3://media/reel/gate/", endpoint_url=endpoint, region="", access_key_id="")
    assert isinstance(store, S3Blobs)
    assert (store.bucket, store.prefix, store.region) == ("media", "reel/gate/", REGION)
    assert parse_s3_url("s3://media") == ("media", "")
    for bad in ("s3://", "s3:///prefix", "s3://b/x?y=1", "s3://b/../x"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)
    with pytest.raises(ValueError):
        S3Blobs("s3://media", access_key_id="only-the-id")
    with pytest.raises(ValueError):
        S3Blobs("s3://media", addressing_style="sideways")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFound),
        ("404", 404, NotFound),
        ("NoSuchBucket", 404, Unavailable),
        ("AccessDenied", 403, Unavailable),
        ("InternalError", 500, Unavailable),
        ("SlowDown", 503, Unavailable),
    ],
)
def test_client_errors_map_to_the_domain_tree(code: str, status: int, expected: type) -> None:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    error = storage_error(ClientError(response, "GetObject"), "blob 'k'")
    assert type(error) is expected
