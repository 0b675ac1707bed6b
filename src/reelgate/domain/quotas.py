"""Roles and limits of API keys, the checks of a create against them, and usage lines.

A key's limits are counted over its owner (every key of one owner shares the
counters): the store applies them in the transaction that inserts the task, so they
hold across any number of API processes. Days and minutes are UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from reelgate.domain.errors import InvalidParameter, RateLimited

DAY = 86400
MINUTE = 60
LIMIT_MAX = 1_000_000_000  # a limit above this is a typo, not a plan
QUEUE_RETRY_AFTER = 5  # seconds: a full queue or too many active tasks drains by itself
ACTIVE_RETRY_AFTER = 5


class Role(StrEnum):
    """What a key may do: a user's own tasks and usage, or (admin) also every key and owner."""

    ADMIN = "admin"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-owner limits of a key; None is no limit. ``max_queued`` is the global cap."""

    rate_per_minute: int | None = None  # creates per UTC minute
    max_active: int | None = None  # tasks not finished (SUBMITTED or IN_PROGRESS)
    seconds_per_day: int | None = None  # seconds of video asked for per UTC day
    max_queued: int | None = None  # unfinished tasks of all owners (the setting)

    @property
    def unlimited(self) -> bool:
        return (
            self.rate_per_minute is None
            and self.max_active is None
            and self.seconds_per_day is None
            and self.max_queued is None
        )

    def as_dict(self) -> dict[str, int | None]:
        """The key's own limits, as the API shows them (the global cap is a setting)."""
        return {
            "rate_per_minute": self.rate_per_minute,
            "max_active": self.max_active,
            "seconds_per_day": self.seconds_per_day,
        }


LIMIT_NAMES = ("rate_per_minute", "max_active", "seconds_per_day")


def check_limit(name: str, value: object) -> int | None:
    """``value`` as a limit (None, or an integer 0..LIMIT_MAX); ``InvalidParameter``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LIMIT_MAX:
        raise InvalidParameter(
            f"limits.{name} must be null or an integer from 0 to {LIMIT_MAX}", param=name
        )
    return value


def day_of(at: float) -> int:
    """The UTC day number (days since 1970-01-01) of Unix time ``at``."""
    return math.floor(at / DAY)


@dataclass(frozen=True, slots=True)
class Counts:
    """What the store counted for an owner, in the create's transaction."""

    active: int = 0  # the owner's unfinished tasks
    seconds_today: int = 0  # seconds of the owner's tasks created today, not failed
    queued: int = 0  # unfinished tasks of every owner


def refuse(limits: Limits, counts: Counts, seconds: int, now: float) -> RateLimited | None:
    """The refusal of a create of ``seconds`` seconds of video, or None when it fits.

    Checked in this order: the global queue, active tasks, seconds per day (the rate
    is counted by the store itself, last, so that a refused create never counts).
    """
    if limits.max_queued is not None and counts.queued >= limits.max_queued:
        return RateLimited(
            f"the server's queue is full ({limits.max_queued} unfinished tasks); retry later",
            retry_after=QUEUE_RETRY_AFTER,
            code="queue_full",
        )
    if limits.max_active is not None and counts.active >= limits.max_active:
        return RateLimited(
            f"this key allows {limits.max_active} unfinished tasks at a time; wait for one "
            "to finish",
            retry_after=ACTIVE_RETRY_AFTER,
            code="active_tasks_limit",
        )
    daily = limits.seconds_per_day
    if daily is not None and counts.seconds_today + seconds > daily:
        left = max(0, daily - counts.seconds_today)
        return RateLimited(
            f"this key allows {daily} seconds of video per UTC day; {left} left today",
            retry_after=seconds_until_next(now, DAY),
            code="daily_seconds_limit",
        )
    return None


def rate_refusal(limits: Limits, now: float) -> RateLimited:
    """The refusal of a create past the key's requests per minute."""
    return RateLimited(
        f"this key allows {limits.rate_per_minute} creates per minute",
        retry_after=seconds_until_next(now, MINUTE),
        code="rate_limited",
    )


def seconds_until_next(now: float, period: int) -> int:
    """Whole seconds from ``now`` until the next multiple of ``period`` (at least 1)."""
    return max(1, math.ceil((math.floor(now / period) + 1) * period - now))


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One owner's use of one model over a range of days: what it is charged for."""

    owner: str
    model: str
    tasks: int
    seconds: int
    tokens: int
    cost: float | None = None  # None: the configuration has no price for the model
    currency: str | None = None
