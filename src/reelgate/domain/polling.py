"""When to look at an upstream task again, how long to back off, when a client polls."""

from __future__ import annotations

import random

from reelgate.domain.status import Phase
from reelgate.domain.task import Task


def next_poll(
    *,
    elapsed: float,
    expected: float | None,
    min_interval: float,
    max_interval: float,
) -> float:
    """Seconds until the next poll of a task that has run ``elapsed`` of ``expected``.

    Far from the expected finish: half the time left (few polls early on). Near it:
    ``min_interval``. Past it: backing off slowly with the overrun, up to
    ``max_interval``.
    """
    if not expected:
        return min_interval
    left = expected - elapsed
    wanted = left / 2 if left > 0 else min_interval + (-left) / 10
    return min(max(wanted, min_interval), max_interval)


def backoff(faults: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after ``faults`` faults in a row: exponential, jittered, capped.

    The provider's ``Retry-After`` is honoured when it asks for longer.
    """
    delay = min(cap, base * 2 ** max(faults - 1, 0))
    delay *= random.uniform(0.8, 1.0)  # jitter, not security
    return float(max(delay, retry_after or 0.0))


MAX_POLL_AFTER = 20.0  # seconds: never advise a client to wait longer between polls


def poll_after(task: Task, now: float, *, interval: float) -> float | None:
    """Seconds a client should wait before it reads ``task`` again; None once it ended.

    A task that waits for a known time (an upstream's next check, a submission's
    backoff) changes no sooner: that time, at least ``interval`` and at most
    ``MAX_POLL_AFTER``. Any other running task: ``interval``.
    """
    if task.terminal:
        return None
    due = task.next_check_at
    if task.phase in _WAITING and due is not None and due - now > interval:
        return min(due - now, MAX_POLL_AFTER)
    return interval


_WAITING = frozenset({Phase.QUEUED, Phase.WATCHING})
