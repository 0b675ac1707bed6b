"""The Ark dialect's pure parts: the create parser, text commands, list query, presenter, errors."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image

from reelgate.api.dialects.ark import ARK_STATUS, _page, ark_answer
from reelgate.api.dialects.ark_create import UNKNOWN_MODEL, parse_commands, parse_create
from reelgate.api.dialects.ark_present import parse_list, present, wire_status
from reelgate.domain import errors as e
from reelgate.domain.catalog import Catalog
from reelgate.domain.listing import ListQuery, Page
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec

CATALOG = Catalog()


def text(prompt: str) -> dict[str, Any]:
    return {"type": "text", "text": prompt}


def data_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, **more}


def body(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "doubao-seedance-1-0-pro", "content": [text("a cat")]}
    out.update(fields)
    return out


def test_commands_are_taken_out_of_the_prompt() -> None:
    prompt, commands = parse_commands("a cat --rt 9:16 --dur 5 --rs 480p --wm true --cf false")
    assert prompt == "a cat"
    assert commands == {
        "ratio": "9:16",
        "duration": 5,
        "resolution": "480p",
        "watermark": True,
        "camera_fixed": False,
    }
    same, none = parse_commands("keep --this as it is, and -- that")
    assert (same, none) == ("keep --this as it is, and -- that", {})
    assert parse_commands("x --seed 12 --fps 24")[1] == {"seed": 12, "framespersecond": 24}


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        ("a --ratio 16:9 --rt 1:1", "ratio"),
        ("a --dur five", "duration"),
        ("a --wm maybe", "watermark"),
    ],
)
def test_bad_commands_are_refused(prompt: str, param: str) -> None:
    with pytest.raises(e.InvalidParameter) as caught:
        parse_commands(prompt)
    assert caught.value.param == param


def test_an_sdk_body_maps_onto_reelgate_create() -> None:
    sdk_nulls = dict.fromkeys(("callback_url", "seed", "frames", "draft", "watermark"))
    parsed = parse_create(
        {
            **sdk_nulls,
            "model": "seedance-1-0-pro-250528",
            "content": [text("a cat --dur 3")],
            "ratio": "4:3",
            "resolution": "1080p",
            "seed": 7,
        },
        CATALOG,
    )
    assert parsed.fields == {
        "prompt": "a cat",
        "model": "doubao-seedance-1-0-pro",
        "seconds": 3,
        "size": "4:3",
        "resolution": "1080p",
    }
    assert parsed.image is None and parsed.ignored == {"seed": 7}
    defaults = parse_create(body(), CATALOG).fields
    assert (defaults["seconds"], defaults["size"], defaults["resolution"]) == (5, "16:9", "720p")
    assert parse_create(body(duration=3, content=[text("a --dur 3")]), CATALOG).fields["seconds"]


def test_an_image_is_the_first_frame_and_adaptive_follows_it() -> None:
    portrait = parse_create(
        body(model="doubao-seedance-2-0", content=[text("a"), image(data_url(36, 64))]), CATALOG
    )
    assert portrait.fields["size"] == "9:16" and portrait.image is not None
    assert portrait.image.startswith(b"\x89PNG")
    square = body(
        model="doubao-seedance-2-0",
        content=[text("a"), image(data_url(50, 50), role="first_frame")],
        ratio="adaptive",
    )
    assert parse_create(square, CATALOG).fields["size"] == "1:1"
    assert parse_create(body(ratio="adaptive"), CATALOG).fields["size"] == "16:9"


@pytest.mark.parametrize(
    ("fields", "param", "error"),
    [
        ({"model": ""}, "model", e.MissingParameter),
        ({"content": []}, "content", e.InvalidParameter),
        ({"content": [image(data_url(8, 8))]}, "content.text", e.MissingParameter),
        ({"content": [text("  ")]}, "content.text", e.MissingParameter),
        ({"content": [{"type": "audio_url"}]}, "content.type", e.InvalidParameter),
        ({"content": [text("a"), image("https://x/a.png")]}, "content.image_url", None),
        ({"content": [text("a"), image("data:image/png;base64,!!")]}, "content.image_url", None),
        ({"content": [text("a"), image("data:x", role="last_frame")]}, "content.role", None),
        ({"content": [text("a"), image(data_url(8, 8))]}, "content.image_url", None),  # t2v
        ({"ratio": "2:1"}, "ratio", None),
        ({"duration": 11}, "duration", None),
        ({"duration": "5"}, "duration", None),
        ({"resolution": "4k"}, "resolution", None),
        ({"seed": 2**32}, "seed", None),
        ({"watermark": "yes"}, "watermark", None),
        ({"draft": True}, "draft", None),
        ({"frames": 121}, "frames", None),
        ({"service_tier": "gold"}, "service_tier", None),
        ({"framespersecond": 30}, "framespersecond", None),
        ({"callback_url": "ftp://x"}, "callback_url", None),
        ({"colour": "red"}, "colour", None),
        ({"content": [text("a --rt 1:1")], "ratio": "16:9"}, "ratio", None),
    ],
)
def test_refusals_name_arks_field(
    fields: dict[str, Any], param: str, error: type[e.ReelgateError] | None
) -> None:
    with pytest.raises(e.InvalidRequest) as caught:
        parse_create(body(**fields), CATALOG)
    assert caught.value.param == param
    assert type(caught.value) is (error or e.InvalidParameter)


def test_an_unknown_model_is_arks_404() -> None:
    with pytest.raises(e.InvalidParameter) as caught:
        parse_create(body(model="seedance-9-0-250101"), CATALOG)
    assert caught.value.code == UNKNOWN_MODEL
    assert ark_answer(caught.value) == (404, UNKNOWN_MODEL)


def _subclasses(cls: type[e.ReelgateError]) -> list[type[e.ReelgateError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


@pytest.mark.parametrize("cls", _subclasses(e.ReelgateError))
def test_every_domain_error_has_an_ark_answer(cls: type[e.ReelgateError]) -> None:
    exc = cls.__new__(cls)
    e.ReelgateError.__init__(exc, "x")
    status, code = ark_answer(exc)
    assert code and 400 <= status < 600
    if issubclass(cls, (e.InvalidRequest, e.TaskNotFound, e.AuthenticationError, e.Conflict)):
        assert status < 500
    assert set(ARK_STATUS) <= set(_subclasses(e.ReelgateError))


def _task(status: Status, **changes: Any) -> Task:
    spec = TaskSpec("doubao-seedance-1-0-pro", "a cat", 2, "9:16", "480p")
    task = Task("task_1", "alice", spec, status, 0, 1000.4, 1010.9)
    return replace(task, **changes)


def test_the_presenter_shows_each_status_in_arks_words() -> None:
    queued = present(_task(Status.SUBMITTED), None)
    assert queued == {
        "id": "task_1",
        "model": "doubao-seedance-1-0-pro",
        "status": "queued",
        "created_at": 1000,
        "updated_at": 1010,
        "resolution": "480p",
        "ratio": "9:16",
        "duration": 2,
        "framespersecond": 24,
        "service_tier": "default",
        "execution_expires_after": 172800,
    }
    assert present(_task(Status.IN_PROGRESS), None)["status"] == "running"
    done = present(_task(Status.SUCCESS, phase=Phase.DONE), "http://h/v.mp4")
    assert done["status"] == "succeeded" and done["content"] == {"video_url": "http://h/v.mp4"}
    assert done["usage"]["completion_tokens"] == 480 * 854 * 24 * 2 // 1024
    remote = present(_task(Status.SUCCESS, phase=Phase.DONE, usage_tokens=99), "http://h/v")
    assert remote["usage"] == {"completion_tokens": 99, "total_tokens": 99}
    failed = _task(Status.FAILED, phase=Phase.DONE, error_code="content_rejected")
    assert present(failed, None)["error"] == {"code": "content_rejected", "message": ""}
    errored = _task(Status.ERROR, phase=Phase.DONE, error_code="worker_lost", error_message="m")
    assert present(errored, None)["status"] == "failed"
    cancelled = _task(
        Status.FAILED,
        phase=Phase.DONE,
        error_code="cancelled",
        error_message="the task was cancelled",
    )
    assert wire_status(cancelled) == "cancelled"
    shown = present(cancelled, None)
    assert shown["status"] == "cancelled" and "error" not in shown and "content" not in shown


def test_the_list_query() -> None:
    query = parse_list({}, CATALOG)
    assert (query.page_num, query.page_size, query.status, query.model) == (1, 10, None, None)
    query = parse_list(
        {
            "page_num": ["3"],
            "page_size": ["500"],
            "filter.status": ["cancelled"],
            "filter.model": ["seedance-1-0-pro-250528"],
            "filter.task_ids": ["a", "b", "a"],
        },
        CATALOG,
    )
    assert (query.page_num, query.page_size, query.status) == (3, 500, "cancelled")
    assert query.model == "doubao-seedance-1-0-pro" and query.task_ids == ("a", "b")
    assert parse_list({"filter.model": ["nope"]}, CATALOG).model == "\x00"  # matches nothing
    for params, param in [
        ({"page_num": ["0"]}, "page_num"),
        ({"page_size": ["501"]}, "page_size"),
        ({"page_size": ["x"]}, "page_size"),
        ({"page_size": ["1", "2"]}, "page_size"),
        ({"filter.status": ["done"]}, "filter.status"),
        ({"filter.task_ids": [str(i) for i in range(101)]}, "filter.task_ids"),
        ({"limit": ["3"]}, "limit"),
    ]:
        with pytest.raises(e.InvalidParameter) as caught:
            parse_list(params, CATALOG)
        assert caught.value.param == param


class _Listing:
    """A TaskService stand-in for the list walk: 250 tasks; the first walk loses its cursor."""

    def __init__(self, lose: int) -> None:
        self.tasks = [
            replace(_task(Status.SUBMITTED), id=f"task_{i:03}", created_at=float(i))
            for i in range(250)
        ][::-1]
        self.lose = lose
        self.calls = 0

    async def list(self, owner: str, query: ListQuery) -> Page:
        self.calls += 1
        if query.after is not None and self.lose:
            self.lose -= 1
            raise e.InvalidParameter("after: no task", param="after")
        start = 0 if query.after is None else [t.id for t in self.tasks].index(query.after) + 1
        chunk = self.tasks[start : start + query.limit]
        return Page(chunk, start + query.limit < len(self.tasks))


async def test_the_list_walk_pages_by_number_and_survives_a_deleted_cursor() -> None:
    listing = _Listing(lose=1)
    query = parse_list({"page_num": ["3"], "page_size": ["100"]}, CATALOG)
    window, total = await _page(listing, "alice", query)  # type: ignore[arg-type]
    assert total == 250 and [t.id for t in window] == [f"task_{i:03}" for i in range(49, -1, -1)]
    assert listing.calls == 5  # a first walk cut short, then three store pages
    with pytest.raises(e.Conflict):
        await _page(_Listing(lose=9), "alice", query)  # type: ignore[arg-type]
