"""A bounded schemathesis run over the app's own /openapi.json: no 5xx, no answer off the schema.

The server is real (SQLite, loopback) and the requests carry a valid key. Every
operation of the document gets a few dozen generated requests, valid ones and
invalid ones (the create bodies in their three media types included), and every
answer is checked against the document: not a server error, a documented status
code, a documented content type, a body that its schema takes, the declared headers.
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
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server import LiveServer, start_server

EXAMPLES = 12  # per operation and mode: the whole run stays under about 30 s
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("schemathesis")), workers=0)
    yield live
    live.stop()


def document(server: LiveServer) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server.base_url}/openapi.json").json()
    return doc


def test_the_document_declares_the_create_bodies_and_the_bearer_scheme(
    server: LiveServer,
) -> None:
    doc = document(server)
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "a reelgate API key: `Authorization: Bearer <key>`",
    }
    paths = doc["paths"]
    create = paths["/v1/videos"]["post"]
    assert list(create["requestBody"]["content"]) == [
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/json",
    ]
    for media, body in create["requestBody"]["content"].items():
        fields = body["schema"]
        assert fields["required"] == ["prompt", "model"], media
        assert "doubao-seedance-2-0-fast" in fields["properties"]["model"]["enum"], media
    image = create["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert image["properties"]["input_reference"]["format"] == "binary"
    assert len(paths["/openai/v1/videos"]["post"]["requestBody"]["content"]) == 3
    assert (
        "application/json"
        in paths["/api/v3/contents/generations/tasks"]["post"]["requestBody"]["content"]
    )
    open_routes = {"/healthz", "/readyz", "/files/{key}", "/v1/callbacks/{task_id}"}
    for path, item in paths.items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            if path in open_routes:
                assert "security" not in operation and "401" not in operation["responses"], label
            else:
                assert operation["security"] == [{"bearer": []}], label
                assert "401" in operation["responses"], label
            assert "422" not in operation["responses"], label
            assert operation["responses"]["200"]["content"], label
    errors = {
        "/v1/videos": "Error",
        "/openai/v1/videos": "OpenAIError",
        "/api/v3/contents/generations/tasks": "ArkError",
    }
    for path, name in errors.items():
        answer = paths[path]["post"]["responses"]["400"]["content"]["application/json"]
        assert answer["schema"] == {"$ref": f"#/components/schemas/{name}"}, path


def test_every_answer_keeps_to_the_document(server: LiveServer) -> None:
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
                    checks=CHECKS,
                    timeout=30,
                )

            try:
                run()
            except Unsatisfiable:  # nothing to spoil in an operation without parameters
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls >= len(operations) * EXAMPLES // 2


def test_the_answers_about_real_tasks_keep_to_the_document(server: LiveServer) -> None:
    """Generated ids are unknown ids: here the reads, cancel and delete of real tasks."""
    schema = schemathesis.openapi.from_dict(document(server))
    headers = server.headers()
    fields = {"prompt": "a lighthouse at dusk", "model": "doubao-seedance-2-0-fast"}

    def check(label: str, status: int = 200, **parameters: Any) -> None:
        operation = schema[label.split(" ")[1]][label.split(" ")[0]]
        case = operation.Case(**parameters)
        response = case.call_and_validate(
            base_url=server.base_url, headers=headers, checks=CHECKS, timeout=30
        )
        assert response.status_code == status, (label, response.text)

    made = httpx.post(f"{server.base_url}/v1/videos", json=fields, headers=headers).json()
    openai = httpx.post(f"{server.base_url}/openai/v1/videos", data=fields, headers=headers).json()
    ark = httpx.post(
        f"{server.base_url}/api/v3/contents/generations/tasks",
        json={"model": fields["model"], "content": [{"type": "text", "text": fields["prompt"]}]},
        headers=headers,
    ).json()
    for task_id in (made["id"], openai["id"], ark["id"]):
        check("GET /v1/videos/{task_id}", path_parameters={"task_id": task_id})
        check("GET /openai/v1/videos/{video_id}", path_parameters={"video_id": task_id})
        check(
            "GET /api/v3/contents/generations/tasks/{task_id}",
            path_parameters={"task_id": task_id},
        )
        check("GET /v1/videos/{task_id}/content", 409, path_parameters={"task_id": task_id})
    check("POST /v1/videos/{task_id}/cancel", path_parameters={"task_id": made["id"]})
    check("GET /v1/videos/{task_id}", path_parameters={"task_id": made["id"]})  # FAILED
    check("GET /openai/v1/videos/{video_id}", path_parameters={"video_id": made["id"]})
    check("GET /api/v3/contents/generations/tasks", query={"page_size": "50"})
    check("GET /v1/videos", query={"limit": "100"})
    check("GET /openai/v1/videos", query={"limit": "100"})
    check("DELETE /v1/videos/{task_id}", path_parameters={"task_id": made["id"]})
    check("DELETE /openai/v1/videos/{video_id}", path_parameters={"video_id": openai["id"]})
    check(
        "DELETE /api/v3/contents/generations/tasks/{task_id}",
        path_parameters={"task_id": ark["id"]},
    )
