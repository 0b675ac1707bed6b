"""A bounded schemathesis run over the app's own /openapi.json: no input gets a 5xx.

The server is real (SQLite, loopback) and the requests carry a valid key. Every
operation of the document gets a few dozen generated requests, valid ones and
invalid ones. Only the server-error check runs: the document has no response schemas
yet, so the conformance checks would test the document rather than the server (the
document's completeness is another issue). Until the document declares the create
body, this test adds a schema of it (JSON and form), so that the body is fuzzed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from reelgate.domain.catalog import SEEDANCE, SIZES
from tests.server import LiveServer, start_server

EXAMPLES = 15  # per operation and mode: the whole run stays well under 30 s

CREATE_BODY = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "model": {"type": "string", "enum": [spec.id for spec in SEEDANCE]},
        "seconds": {"type": "integer"},
        "size": {"type": "string", "enum": list(SIZES)},
        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p"]},
    },
    "required": ["prompt", "model"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("schemathesis")), workers=0)
    yield live
    live.stop()


def document(server: LiveServer) -> dict[str, Any]:
    """The app's OpenAPI document, with the create body added where it is missing."""
    doc: dict[str, Any] = httpx.get(f"{server.base_url}/openapi.json").json()
    create = doc["paths"]["/v1/videos"]["post"]
    create.setdefault(
        "requestBody",
        {
            "required": True,
            "content": {
                media: {"schema": CREATE_BODY}
                for media in ("application/json", "application/x-www-form-urlencoded")
            },
        },
    )
    return doc


def test_no_input_gets_a_server_error(server: LiveServer) -> None:
    schema = schemathesis.openapi.from_dict(document(server))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/videos", "GET /v1/videos/{task_id}"}
    calls = 0

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,  # nothing written to .hypothesis/
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(
                    base_url=server.base_url,
                    headers=server.headers(),
                    checks=[not_a_server_error],
                    timeout=30,
                )

            try:
                run()
            except Unsatisfiable:  # nothing to spoil in an operation without parameters
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls >= len(operations) * EXAMPLES // 2
