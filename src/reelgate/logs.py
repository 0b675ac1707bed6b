"""Log output of the server: readable lines, or one JSON object per line.

``REELGATE_LOG_FORMAT=json`` writes each record as a JSON object (``time``, ``level``,
``logger``, ``message``, and ``exception`` with its traceback), with two fields that
tie lines together: ``request_id`` (the ``X-Request-Id`` of the HTTP request being
handled, set by ``api.middleware.RequestId``) and ``task_id`` (the task a worker, a
submitter or a poller is working on). Both come from context variables, so they follow
the asyncio task that set them; a record may also carry them as ``extra`` fields.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from reelgate.domain.task import ID_PREFIX

REQUEST_ID: ContextVar[str | None] = ContextVar("reelgate_request_id", default=None)
TASK_ID: ContextVar[str | None] = ContextVar("reelgate_task_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the request id and task id when known."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            data["request_id"] = request_id
        task_id = getattr(record, "task_id", None) or TASK_ID.get() or _named_task(record)
        if task_id:
            data["task_id"] = task_id
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _named_task(record: logging.LogRecord) -> str | None:
    """The first task id among the record's arguments (``"task %s …"`` lines)."""
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        if isinstance(arg, str) and arg.startswith(ID_PREFIX):
            return arg
    return None


def configure(level: str, format: str = "text") -> None:
    """Send the server's logs to stderr at ``level``, as text lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # One line per upstream request is noise at info level (polls are many).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
