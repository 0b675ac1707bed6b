"""Wake-ups: how a new task reaches an idle worker without sleep-polling."""

from __future__ import annotations

import asyncio
import contextlib


class LocalWakeup:
    """Wakes workers in this process; ``notify`` is safe to call from the event loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after ``timeout`` seconds, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
