"""The OpenAI dialect's pure parts: the presenter, the create fields, the poll advice."""

from __future__ import annotations

import pytest

from reelgate.api.dialects.openai import create_fields, list_query, present
from reelgate.domain.errors import InvalidParameter
from reelgate.domain.polling import MAX_POLL_AFTER, poll_after
from reelgate.domain.status import Phase, Status
from reelgate.domain.task import Task, TaskSpec

SPEC = TaskSpec("doubao-seedance-2-0", "a fox", 8, "9:16", "720p")
ALIASES = {"sora-2": "doubao-seedance-2-0-fast"}


def task(status: Status, phase: Phase, **changes: object) -> Task:
    done = 1_700_000_100.0 if status.terminal else None
    return Task(
        "task_x",
        "alice",
        SPEC,
        status,
        100 if status is Status.SUCCESS else 30,
        1_700_000_000.5,
        1_700_000_000.5,
        done,
        phase=phase,
        **changes,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("status", "phase", "shown"),
    [
        (Status.SUBMITTED, Phase.QUEUED, "queued"),
        (Status.IN_PROGRESS, Phase.RENDERING, "in_progress"),
        (Status.SUCCESS, Phase.DONE, "completed"),
        (Status.FAILED, Phase.DONE, "failed"),
        (Status.ERROR, Phase.DONE, "failed"),
    ],
)
def test_present_maps_every_status(status: Status, phase: Phase, shown: str) -> None:
    body = present(task(status, phase), 1_700_000_050.0)
    assert body["status"] == shown
    assert (body["seconds"], body["size"], body["model"]) == ("8", "720x1280", SPEC.model)
    assert body["created_at"] == 1_700_000_000 and body["object"] == "video"
    assert body["completed_at"] == (1_700_000_100 if status.terminal else None)
    assert body["error"] is None and body["expires_at"] is None


def test_present_shows_the_error() -> None:
    failed = task(Status.FAILED, Phase.DONE, error_code="cancelled", error_message="stopped")
    assert present(failed, 0.0)["error"] == {"code": "cancelled", "message": "stopped"}


def test_create_fields_take_openai_defaults_and_aliases() -> None:
    fields, image = create_fields({"prompt": "a"}, ALIASES)
    assert image is None
    assert fields == {
        "prompt": "a",
        "model": "doubao-seedance-2-0-fast",
        "seconds": "4",
        "size": "720x1280",
    }
    fields, _ = create_fields({"prompt": "a", "model": "x", "seconds": "8"}, ALIASES)
    assert (fields["model"], fields["seconds"]) == ("x", "8")  # the catalog judges "x"
    with pytest.raises(InvalidParameter):
        create_fields({"prompt": "a", "input_reference[image_url]": "https://a/b.png"}, ALIASES)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": ["0"]}, "limit"),
        ({"limit": ["101"]}, "limit"),
        ({"limit": ["9" * 5000]}, "limit"),
        ({"order": ["up"]}, "order"),
        ({"status": ["queued"]}, "status"),
        ({"after": ["a", "b"]}, "after"),
    ],
)
def test_list_query_refusals(params: dict[str, list[str]], param: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        list_query(params)
    assert caught.value.param == param


def test_poll_after() -> None:
    now = 1_700_000_050.0
    assert poll_after(task(Status.SUCCESS, Phase.DONE), now, interval=1.0) is None
    assert poll_after(task(Status.SUBMITTED, Phase.QUEUED), now, interval=0.5) == 0.5
    assert poll_after(task(Status.IN_PROGRESS, Phase.RENDERING), now, interval=2.0) == 2.0
    watching = Phase.WATCHING
    soon = task(Status.IN_PROGRESS, watching, next_check_at=now + 7)
    assert poll_after(soon, now, interval=1.0) == 7
    late = task(Status.IN_PROGRESS, watching, next_check_at=now + 600)
    assert poll_after(late, now, interval=1.0) == MAX_POLL_AFTER
    due = task(Status.IN_PROGRESS, watching, next_check_at=now - 3)
    assert poll_after(due, now, interval=1.0) == 1.0
