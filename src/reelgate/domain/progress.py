"""Progress for upstreams that report none: a guess from the expected run time.

``estimate`` rises linearly to 90 at the expected time, then creeps towards 99 and
never reaches it; it only grows with the elapsed time, so a client never sees it go
down. ``learn`` keeps the expected time per (provider, model, seconds, resolution)
as an exponential moving average of finished runs.
"""

from __future__ import annotations

import math

DEFAULT_SECONDS_PER_VIDEO_SECOND = 12.0  # before any history: 5 s of video ~ 1 minute
LEARNING_RATE = 0.2  # weight of the newest run in the moving average
_AT_EXPECTED = 90
_CEILING = 99


def estimate(elapsed: float, expected: float) -> int:
    """Progress 0..99 after ``elapsed`` seconds of a run expected to take ``expected``."""
    if elapsed <= 0 or expected <= 0:
        return 0
    share = elapsed / expected
    if share <= 1:
        return int(_AT_EXPECTED * share)
    late = 1 - math.exp(-2 * (share - 1))
    return min(_CEILING - 1, _AT_EXPECTED + int((_CEILING - _AT_EXPECTED) * late))


def default_expected(seconds: int) -> float:
    """The expected run time before any history exists."""
    return DEFAULT_SECONDS_PER_VIDEO_SECOND * max(seconds, 1)


def learn(previous: float | None, took: float) -> float:
    """The moving average after one more run that took ``took`` seconds."""
    if previous is None:
        return took
    return previous + LEARNING_RATE * (took - previous)


# A heartbeat records a ``progress`` event when its progress crosses a multiple of this
# (at most 100 / PROGRESS_STEP events per task), so that streams see the steps.
PROGRESS_STEP = 5


def progress_stepped(before: int, after: int) -> bool:
    """Whether a progress change from ``before`` to ``after`` is worth an event."""
    return after // PROGRESS_STEP > before // PROGRESS_STEP
