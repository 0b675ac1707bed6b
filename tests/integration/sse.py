"""A small server-sent events reader over httpx, for the tests of ``/v1/videos/{id}/events``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    """One event of a stream, or a comment (``event == ""``, the comment in ``data``)."""

    id: int | None
    event: str
    data: str

    @property
    def video(self) -> dict[str, Any]:
        body = json.loads(self.data)
        assert isinstance(body, dict)
        return body


def frames(response: httpx.Response) -> Iterator[Frame]:
    """The frames of an event stream as they arrive, until the server ends it."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Frame(None, "", line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            seq = fields.get("id")
            yield Frame(None if seq is None else int(seq), fields["event"], fields["data"])
            fields = {}
