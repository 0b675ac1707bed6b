"""The host methods that the stores' mixins (hooks, quotas, retention) run through.

Each mixin adds one port's methods to ``SqliteStore`` or ``PostgresStore`` and runs its
statements with the host store's own connection handling; these bases declare those
methods for the type checker only (at run time they are empty).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from reelgate.domain.task import Task

T = TypeVar("T")


class SqliteHost:
    """A mixin of ``SqliteStore``: writes on its one writer thread, reads on any."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _read(self, statement: str, params: dict[str, Any]) -> list[Any]: ...


class PostgresHost:
    """A mixin of ``PostgresStore``: pooled connections, one statement at a time."""

    if TYPE_CHECKING:

        def _connection(
            self, timeout: float | None = None
        ) -> contextlib.AbstractAsyncContextManager[Any]: ...

        async def _rows(
            self, statement: str, params: Mapping[str, Any], timeout: float | None = None
        ) -> list[Any]: ...

        async def _tasks(self, statement: str, params: Mapping[str, Any]) -> list[Task]: ...
