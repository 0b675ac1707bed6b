"""Listing an owner's tasks: the query, its parsing, and one page of the answer.

Tasks are listed by creation time, then by id (a total order: ids are unique), newest
first by default. Pagination is by cursor: ``after`` names the last task of the page
before, and the next page starts right after it in the chosen order. Stores page with a
keyset (``(created_at, id)`` beyond the cursor's), never with an offset, so that a deep
page costs what the first one does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from reelgate.domain.errors import InvalidParameter
from reelgate.domain.request import storable_text
from reelgate.domain.status import Status
from reelgate.domain.task import Task

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
ORDERS = ("asc", "desc")
PARAMS = ("after", "limit", "order", "status", "model", "created_after", "created_before")
_INTEGER = re.compile(r"[0-9]{1,4}")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")

Order = Literal["asc", "desc"]
Cursor = tuple[float, str]  # (created_at, id) of the task a page starts after


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a list request asks for; every field already validated.

    ``created_after`` is inclusive and ``created_before`` exclusive (Unix seconds), so
    that consecutive ranges tile time without overlap.
    """

    after: str | None = None
    limit: int = DEFAULT_LIMIT
    order: Order = "desc"
    status: Status | None = None
    model: str | None = None
    created_after: float | None = None
    created_before: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidParameter(
                f"limit must be an integer from 1 to {MAX_LIMIT}, got {self.limit}",
                param="limit",
            )
        if self.order not in ORDERS:
            raise InvalidParameter(f"order must be asc or desc, got {self.order!r}", param="order")

    @property
    def descending(self) -> bool:
        return self.order == "desc"

    def matches(self, task: Task) -> bool:
        """Whether ``task`` passes the filters (the owner and the cursor aside)."""
        return (
            (self.status is None or task.status is self.status)
            and (self.model is None or task.spec.model == self.model)
            and (self.created_after is None or task.created_at >= self.created_after)
            and (self.created_before is None or task.created_at < self.created_before)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of tasks, in the query's order; ``has_more`` when another page follows."""

    tasks: list[Task]
    has_more: bool


def beyond(task: Task, cursor: Cursor | None, descending: bool) -> bool:
    """Whether ``task`` comes after ``cursor`` in the order (always, without a cursor)."""
    if cursor is None:
        return True
    key = (task.created_at, task.id)
    return key < cursor if descending else key > cursor


def page_of(tasks: Sequence[Task], limit: int) -> Page:
    """A page from up to ``limit + 1`` tasks read in order: the extra one means more."""
    return Page(list(tasks[:limit]), len(tasks) > limit)


def parse_list_query(params: Mapping[str, Sequence[str]]) -> ListQuery:
    """A ``ListQuery`` from query parameters (each name -> every value it was given).

    Raises ``InvalidParameter`` naming the parameter: an unknown name, a name given
    twice, or a value outside its set or range (the message says what is allowed).
    """
    values: dict[str, str] = {}
    for name, given in params.items():
        if name not in PARAMS:
            raise InvalidParameter(
                f"unknown parameter {name!r}; a list takes {', '.join(PARAMS)}", param=name
            )
        if len(given) != 1:
            raise InvalidParameter(f"{name} may be given once", param=name)
        if not storable_text(given[0]):
            raise InvalidParameter(f"{name} holds characters that are not allowed", param=name)
        values[name] = given[0]
    limit = DEFAULT_LIMIT
    if "limit" in values:
        text = values["limit"].strip()
        if not _INTEGER.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
            raise InvalidParameter(
                f"limit must be an integer from 1 to {MAX_LIMIT}, got {values['limit'][:40]!r}",
                param="limit",
            )
        limit = int(text)
    order = values.get("order", "desc")
    if order not in ORDERS:
        raise InvalidParameter(f"order must be asc or desc, got {order[:40]!r}", param="order")
    status = None
    if "status" in values:
        status = _STATUSES.get(values["status"])
        if status is None:
            raise InvalidParameter(
                f"status must be one of {', '.join(_STATUSES)}, got {values['status'][:40]!r}",
                param="status",
            )
    after = values.get("after")
    if after is not None and not after:
        raise InvalidParameter("after must be a task id, not empty", param="after")
    model = values.get("model")
    if model is not None and not model:
        raise InvalidParameter("model must be a model id, not empty", param="model")
    created_after = _seconds(values, "created_after")
    created_before = _seconds(values, "created_before")
    return ListQuery(
        after=after,
        limit=limit,
        order="asc" if order == "asc" else "desc",
        status=status,
        model=model,
        created_after=created_after,
        created_before=created_before,
    )


_STATUSES = {status.value: status for status in Status}


def _seconds(values: Mapping[str, str], name: str) -> float | None:
    text = values.get(name)
    if text is None:
        return None
    if not _NUMBER.fullmatch(text.strip()):
        raise InvalidParameter(
            f"{name} must be a time in Unix seconds (e.g. 1776681149), got {text[:40]!r}",
            param=name,
        )
    return float(text)
