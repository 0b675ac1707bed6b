"""When to look at an upstream task again, and how long to back off after a fault."""

from __future__ import annotations

import random


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
