"""An S3-compatible server on loopback for tests: moto's server mode, in a subprocess.

``s3_server()`` starts it and yields its endpoint URL; buckets and objects live in
that process, so any number of reelgate processes can share them over HTTP.

moto does not check query-string (presigned) signatures, so the server wraps
moto's WSGI app in ``PresignedCheck``: a request that carries
``X-Amz-Signature`` is verified here, independently of botocore, with the
SigV4 rules (canonical request, scope, HMAC chain) and refused with 403 when
the signature is wrong, the key unknown or the URL expired, as S3 does.
Header-signed requests (the SDK's own calls) go to moto unchecked.

Run ``python -m tests.s3`` to serve one by hand; it prints its URL.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

ACCESS_KEY = "reelgate-test-key"
SECRET_KEY = "reelgate-test-secret"
REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[1]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def aws_environ() -> dict[str, str]:
    """Environment variables that keep boto3 on the dummy credentials and off the network.

    Dummy keys (so boto3 never looks for real ones), no shared config or
    credentials files, no EC2 metadata endpoint, and no proxy for loopback.
    """
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@contextmanager
def s3_server(*, timeout: float = 30.0) -> Iterator[str]:
    """Start an S3-compatible server on 127.0.0.1 and yield its endpoint URL.

    The server picks a free port itself and prints its URL once it listens;
    it is stopped (and its state dropped) when the block ends.
    """
    env = {**os.environ, **aws_environ(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.s3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line.startswith("http://") and time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited with {proc.returncode}")
        if not line.startswith("http://"):
            raise RuntimeError("the S3 server did not start in time")
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PresignedCheck:
    """WSGI middleware: refuse presigned requests whose SigV4 query signature fails."""

    def __init__(self, app: WsgiApp, secrets: dict[str, str]) -> None:
        self.app = app
        self.secrets = secrets

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        if "X-Amz-Signature=" in query:
            refusal = self.refusal(environ, query)
            if refusal is not None:
                code, message = refusal
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                ).encode()
                start_response(
                    "403 Forbidden",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
                )
                return [body]
        return self.app(environ, start_response)

    def refusal(self, environ: Environ, query: str) -> tuple[str, str] | None:
        """Why this presigned request is refused (an S3 error code and message), or None."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        try:
            algorithm = params["X-Amz-Algorithm"]
            credential = params["X-Amz-Credential"]
            amz_date = params["X-Amz-Date"]
            expires = int(params["X-Amz-Expires"])
            signed_headers = params["X-Amz-SignedHeaders"]
            signature = params["X-Amz-Signature"]
            access_key, date, region, service, terminator = credential.split("/")
            issued = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except (KeyError, ValueError):
            return "AuthorizationQueryParametersError", "malformed presigned query"
        if algorithm != "AWS4-HMAC-SHA256" or terminator != "aws4_request":
            return "AuthorizationQueryParametersError", "unsupported algorithm"
        secret = self.secrets.get(access_key)
        if secret is None:
            return "InvalidAccessKeyId", "unknown access key"
        if not 1 <= expires <= 604800 or time.time() > issued + expires:
            return "AccessDenied", "Request has expired"
        names = signed_headers.split(";")
        headers = "".join(f"{name}:{_header(environ, name)}\n" for name in names)
        canonical_query = "&".join(
            sorted(
                f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}"
                for key, value in pairs
                if key != "X-Amz-Signature"
            )
        )
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]
        canonical = "\n".join(
            [
                environ["REQUEST_METHOD"],
                path.split("?", 1)[0],
                canonical_query,
                headers,
                signed_headers,
                "UNSIGNED-PAYLOAD",
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            [algorithm, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch", "the signature does not match"
        return None


def _header(environ: Environ, name: str) -> str:
    if name == "host":
        return str(environ.get("HTTP_HOST", "")).strip()
    key = "HTTP_" + name.upper().replace("-", "_")
    if name in ("content-type", "content-length"):
        key = name.upper().replace("-", "_")
    return " ".join(str(environ.get(key, "")).split())


def main() -> None:
    """Serve moto's S3 behind ``PresignedCheck`` on 127.0.0.1 (a free port) until killed."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = PresignedCheck(DomainDispatcherApplication(create_backend_app), {ACCESS_KEY: SECRET_KEY})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
