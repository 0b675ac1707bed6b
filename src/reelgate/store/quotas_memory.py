"""Keys' limits and usage in memory (a mixin of ``MemoryStore``): the fake of the SQL.

``_account`` is its triggers: called with every recorded event, it writes the usage of
a task that ended SUCCESS and gives back the daily seconds of one that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reelgate.domain.errors import NotFound
from reelgate.domain.quotas import (
    MINUTE,
    Counts,
    Limits,
    UsageLine,
    day_of,
    rate_refusal,
    refuse,
)
from reelgate.domain.status import Status
from reelgate.domain.task import ApiKey, Task

_UNFINISHED = (Status.SUBMITTED, Status.IN_PROGRESS)


@dataclass
class _Ledger:
    rate: dict[tuple[str, int], int] = field(default_factory=dict)  # (owner, minute)
    daily: dict[tuple[str, int], int] = field(default_factory=dict)  # (owner, day)
    counted: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # task -> daily
    usage: dict[tuple[int, str, str], tuple[int, int, int]] = field(default_factory=dict)
    charged: set[str] = field(default_factory=set)


class MemoryQuotas:
    """The ``QuotaStore`` methods of ``MemoryStore``; call ``_admit`` under its lock."""

    if TYPE_CHECKING:
        _tasks: dict[str, Task]
        _keys: dict[str, ApiKey]

    _quota_ledger: _Ledger | None = None

    @property
    def _ledger(self) -> _Ledger:
        if self._quota_ledger is None:
            self._quota_ledger = _Ledger()
        return self._quota_ledger

    def _admit(self, task: Task, limits: Limits) -> None:
        """Count ``task``'s create against ``limits``, or raise ``RateLimited``."""
        ledger, owner = self._ledger, task.owner
        unfinished = [t for t in self._tasks.values() if t.status in _UNFINISHED]
        day, minute = day_of(task.created_at), int(task.created_at // MINUTE)
        counts = Counts(
            active=sum(1 for t in unfinished if t.owner == owner),
            seconds_today=ledger.daily.get((owner, day), 0),
            queued=len(unfinished),
        )
        refused = refuse(limits, counts, task.spec.seconds, task.created_at)
        if refused is not None:
            raise refused
        if limits.rate_per_minute is not None:
            if ledger.rate.get((owner, minute), 0) >= limits.rate_per_minute:
                raise rate_refusal(limits, task.created_at)
            ledger.rate[(owner, minute)] = ledger.rate.get((owner, minute), 0) + 1
        if limits.seconds_per_day is not None:
            ledger.daily[(owner, day)] = counts.seconds_today + task.spec.seconds
            ledger.counted[task.id] = (owner, day, task.spec.seconds)

    def _account(self, task: Task) -> None:
        ledger = self._ledger
        if task.status is Status.SUCCESS and task.id not in ledger.charged:
            ledger.charged.add(task.id)
            at = task.completed_at if task.completed_at is not None else task.updated_at
            slot = (day_of(at), task.owner, task.spec.model)
            tasks, seconds, tokens = ledger.usage.get(slot, (0, 0, 0))
            ledger.usage[slot] = (
                tasks + 1,
                seconds + task.spec.seconds,
                tokens + (task.usage_tokens or 0),
            )
        elif task.status in (Status.FAILED, Status.ERROR) and task.id in ledger.counted:
            owner, day, seconds = ledger.counted.pop(task.id)
            if (owner, day) in ledger.daily:
                ledger.daily[(owner, day)] = max(0, ledger.daily[(owner, day)] - seconds)

    async def key_by_id(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def update_key(self, key: ApiKey) -> ApiKey:
        if key.id not in self._keys:
            raise NotFound(f"no API key with id {key.id!r}")
        self._keys[key.id] = key
        return key

    async def usage(
        self, start_day: int, end_day: int, *, owner: str | None = None, model: str | None = None
    ) -> list[UsageLine]:
        sums: dict[tuple[str, str], tuple[int, int, int]] = {}
        for (day, who, what), (tasks, seconds, tokens) in self._ledger.usage.items():
            if not start_day <= day <= end_day:
                continue
            if (owner is not None and who != owner) or (model is not None and what != model):
                continue
            before = sums.get((who, what), (0, 0, 0))
            sums[(who, what)] = (before[0] + tasks, before[1] + seconds, before[2] + tokens)
        return [UsageLine(who, what, *sums[(who, what)]) for who, what in sorted(sums)]
