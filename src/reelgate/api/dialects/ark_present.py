"""The Ark dialect's reads, pure: the list query, the status mapping, the task presenter.

A task is shown as Ark's task object (``present``); its status in Ark's words
(``wire_status``): SUBMITTED is ``queued``, IN_PROGRESS ``running``, SUCCESS
``succeeded``, a cancelled task (FAILED with code ``cancelled``) ``cancelled``, and any
other FAILED or ERROR ``failed``. Reelgate's tasks never show Ark's ``expired``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelgate.api.dialects.ark_create import resolve_model
from reelgate.domain.catalog import FPS, Catalog, frame_size
from reelgate.domain.errors import InvalidParameter
from reelgate.domain.status import Status
from reelgate.domain.task import Task

STATUSES = ("queued", "running", "cancelled", "succeeded", "failed", "expired")
EXECUTION_EXPIRES_AFTER = 172800  # what Ark shows by default (48 hours)
MAX_PAGE = 500  # page_num and page_size: 1 to 500, as Ark takes them
DEFAULT_PAGE_SIZE = 10
MAX_TASK_IDS = 100


@dataclass(frozen=True, slots=True)
class ArkListQuery:
    """Ark's list query: a page by number, and filters (all optional)."""

    page_num: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    status: str | None = None
    model: str | None = None  # a catalog id
    task_ids: tuple[str, ...] = ()
    service_tier: str | None = None


def parse_list(params: Mapping[str, Sequence[str]], catalog: Catalog) -> ArkListQuery:
    """``ArkListQuery`` from the query string; ``InvalidParameter`` naming a bad one."""
    known = ("page_num", "page_size", "filter.status", "filter.model", "filter.task_ids")
    values: dict[str, str] = {}
    for name, given in params.items():
        if name not in (*known, "filter.service_tier"):
            raise InvalidParameter(
                f"The parameter `{name[:100]}` is not supported.", param=name[:100]
            )
        if name != "filter.task_ids":
            if len(given) != 1:
                raise InvalidParameter(f"The parameter `{name}` may be given once.", param=name)
            values[name] = given[0]
    pages = []
    for name, default in (("page_num", 1), ("page_size", DEFAULT_PAGE_SIZE)):
        raw = values.get(name, str(default)).strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise InvalidParameter(f"The parameter `{name}` must be 1 to {MAX_PAGE}.", param=name)
        pages.append(int(raw))
    status = values.get("filter.status")
    if status is not None and status not in STATUSES:
        raise InvalidParameter(
            f"The parameter `filter.status` must be one of {', '.join(STATUSES)}.",
            param="filter.status",
        )
    model = values.get("filter.model")
    if model is not None:
        try:
            model = resolve_model(model, catalog).id
        except InvalidParameter:
            model = "\x00"  # no task has it: an empty list, as Ark answers
    ids = tuple(dict.fromkeys(params.get("filter.task_ids", ())))
    if len(ids) > MAX_TASK_IDS:
        raise InvalidParameter(
            f"The parameter `filter.task_ids` takes at most {MAX_TASK_IDS} ids.",
            param="filter.task_ids",
        )
    return ArkListQuery(pages[0], pages[1], status, model, ids, values.get("filter.service_tier"))


def wire_status(task: Task) -> str:
    """The task's status in Ark's words (a cancelled task ends FAILED with code cancelled)."""
    status = task.status
    if status is Status.SUBMITTED:
        return "queued"
    if status is Status.IN_PROGRESS:
        return "running"
    if status is Status.SUCCESS:
        return "succeeded"
    return "cancelled" if task.cancelled else "failed"


def listed(task: Task, query: ArkListQuery) -> bool:
    """Whether ``task`` passes the query's filters."""
    return (
        (query.status is None or wire_status(task) == query.status)
        and (query.model is None or task.spec.model == query.model)
        and (not query.task_ids or task.id in query.task_ids)
        and query.service_tier in (None, "default")
    )


def present(task: Task, video_url: str | None) -> dict[str, Any]:
    """``task`` as Ark's task object; ``video_url`` is the signed link once it succeeded."""
    status = wire_status(task)
    spec = task.spec
    body: dict[str, Any] = {
        "id": task.id,
        "model": spec.model,
        "status": status,
        "created_at": int(task.created_at),
        "updated_at": int(task.updated_at),
        "resolution": spec.resolution,
        "ratio": spec.size,
        "duration": spec.seconds,
        "framespersecond": FPS,
        "service_tier": "default",
        "execution_expires_after": EXECUTION_EXPIRES_AFTER,
    }
    if status == "succeeded":
        if video_url is not None:  # None once retention deleted the video
            body["content"] = {"video_url": video_url}
        tokens = task.usage_tokens
        if tokens is None:
            width, height = frame_size(spec.size, spec.resolution)
            tokens = width * height * FPS * spec.seconds // 1024
        body["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
    elif status == "failed":
        body["error"] = {"code": task.error_code or "failed", "message": task.error_message or ""}
    return body
