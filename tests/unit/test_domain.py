"""The status machine, the catalog, request parsing and the error table."""

from __future__ import annotations

import pytest

from reelgate.api.errors import STATUS
from reelgate.domain import errors
from reelgate.domain.catalog import SIZES, Catalog, frame_size
from reelgate.domain.errors import (
    IllegalTransition,
    InvalidParameter,
    MissingParameter,
    ReelgateError,
    UnsupportedTaskType,
)
from reelgate.domain.request import parse_create
from reelgate.domain.status import ALLOWED, Status, check_transition
from reelgate.domain.task import new_task_id

CATALOG = Catalog()


def test_allowed_moves_are_exactly_the_contracts() -> None:
    legal = {(a, b) for a, targets in ALLOWED.items() for b in targets}
    assert legal == {
        (Status.SUBMITTED, Status.IN_PROGRESS),
        (Status.SUBMITTED, Status.FAILED),
        (Status.SUBMITTED, Status.ERROR),
        (Status.IN_PROGRESS, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Status.SUCCESS),
        (Status.IN_PROGRESS, Status.FAILED),
        (Status.IN_PROGRESS, Status.ERROR),
    }
    for current in Status:
        for target in Status:
            if (current, target) in legal:
                check_transition(current, target)
            else:
                with pytest.raises(IllegalTransition):
                    check_transition(current, target)


def test_terminal_statuses() -> None:
    assert {s for s in Status if s.terminal} == {Status.SUCCESS, Status.FAILED, Status.ERROR}


def test_ids_are_unguessable() -> None:
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("task_") and len(i) >= 5 + 27 for i in ids)  # >= 160 bits


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ("16:9", "720p", (1280, 720)),
        ("9:16", "720p", (720, 1280)),
        ("1:1", "480p", (480, 480)),
        ("16:9", "480p", (854, 480)),
        ("21:9", "1080p", (2520, 1080)),
        ("4:3", "1080p", (1440, 1080)),
        ("3:4", "480p", (480, 640)),
    ],
)
def test_frame_size(size: str, resolution: str, expected: tuple[int, int]) -> None:
    assert frame_size(size, resolution) == expected


def test_every_size_gives_even_dimensions() -> None:
    for size in SIZES:
        for resolution in ("480p", "720p", "1080p"):
            width, height = frame_size(size, resolution)
            assert width % 2 == 0 and height % 2 == 0


def test_parse_defaults_and_numbers_as_strings() -> None:
    request = parse_create(
        {"prompt": "a cat", "model": "doubao-seedance-2-0"}, has_image=False, catalog=CATALOG
    )
    assert (request.seconds, request.size, request.resolution) == (5, "16:9", "720p")
    request = parse_create(
        {
            "prompt": "a cat",
            "model": "doubao-seedance-1-0-pro",
            "seconds": "2",
            "resolution": "1080p",
            "size": "9:16",
        },
        has_image=False,
        catalog=CATALOG,
    )
    assert (request.seconds, request.size, request.resolution) == (2, "9:16", "1080p")


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"model": "doubao-seedance-2-0"}, MissingParameter, "prompt"),
        ({"prompt": "  ", "model": "doubao-seedance-2-0"}, MissingParameter, "prompt"),
        ({"prompt": "x" * 4001, "model": "doubao-seedance-2-0"}, InvalidParameter, "prompt"),
        ({"prompt": "a"}, MissingParameter, "model"),
        ({"prompt": "a", "model": "sora-2"}, InvalidParameter, "model"),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "seconds": "3"},
            InvalidParameter,
            "seconds",
        ),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "seconds": "16"},
            InvalidParameter,
            "seconds",
        ),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "seconds": "5.5"},
            InvalidParameter,
            "seconds",
        ),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "seconds": True},
            InvalidParameter,
            "seconds",
        ),
        ({"prompt": "a", "model": "doubao-seedance-2-0", "size": "2:1"}, InvalidParameter, "size"),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "resolution": "1080p"},
            InvalidParameter,
            "resolution",
        ),
        (
            {"prompt": "a", "model": "doubao-seedance-2-0", "colour": "red"},
            InvalidParameter,
            "colour",
        ),
        ({"prompt": 5, "model": "doubao-seedance-2-0"}, InvalidParameter, "prompt"),
    ],
)
def test_parse_errors_name_the_param(
    fields: dict[str, object], error: type[ReelgateError], param: str
) -> None:
    with pytest.raises(error) as caught:
        parse_create(fields, has_image=False, catalog=CATALOG)
    assert type(caught.value) is error
    assert caught.value.param == param


def test_image_on_a_text_only_model() -> None:
    fields = {"prompt": "a", "model": "doubao-seedance-1-5-pro"}
    with pytest.raises(UnsupportedTaskType) as caught:
        parse_create(fields, has_image=True, catalog=CATALOG)
    message = "the specified task_type r2v does not support model doubao-seedance-1-5-pro"
    assert caught.value.message == message
    assert caught.value.code == "InvalidParameter"
    parse_create(
        {"prompt": "a", "model": "doubao-seedance-2-0-fast"}, has_image=True, catalog=CATALOG
    )


def _subclasses(cls: type[ReelgateError]) -> set[type[ReelgateError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


def test_the_error_table_is_complete() -> None:
    defined = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, ReelgateError)
    }
    assert defined == _subclasses(ReelgateError)
    assert set(STATUS) == defined
