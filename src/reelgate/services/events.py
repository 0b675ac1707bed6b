"""Pushing task changes to clients: one reader per process, fanned out to every waiter.

Every change a client may want pushed is an event row (``task_events``): status
changes, and progress steps (a heartbeat that crosses a multiple of 5 percent, a
provider's reported progress). Its ``seq`` rises with each event of a task in commit
order, so it is the cursor of server-sent events and long-polls.

``EventHub.wait`` answers a task's events after a cursor as soon as there are some.
Waiters hold no task or timer loop of their own: one reader per process learns which
tasks changed and wakes only their waiters, who then read their task's new events.

- PostgreSQL: LISTEN on the channel that migration 0004's trigger notifies with each
  event's task id (``EventListener``), so that an API process sees the events a worker
  process records; after a reconnection every waiter reads again.
- SQLite and memory: a short poll of the events table after a global cursor, only
  while someone waits. Writers are serialised there, so ``seq`` is in commit order and
  the cursor misses nothing.

A waiter also reads its task once more when its timeout ends (before a stream's
heartbeat), which bounds the delay of a missed wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from reelgate.domain.errors import InvalidParameter, ReelgateError
from reelgate.domain.task import Event
from reelgate.ports import EventListener, TaskStore

log = logging.getLogger("reelgate.events")

MAX_WAIT = 60.0  # the longest long-poll (``?wait=``)
FEED_BATCH = 1000


def parse_wait(text: str) -> float:
    """The seconds of a long-poll's ``wait`` (more than 0, at most 60); else 400."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_WAIT:  # NaN fails too
        raise InvalidParameter(
            f"wait must be a number of seconds, more than 0 and at most {MAX_WAIT:.0f}",
            param="wait",
        )
    return seconds


def parse_cursor(text: str) -> int:
    """A ``Last-Event-ID`` as sent back by a client: the ``id`` of an event (0 or more)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidParameter(
            "Last-Event-ID must be the id of an event of this stream (a whole number)",
            param="Last-Event-ID",
        )
    return int(text)


class EventHub:
    """A process's waiters for task events, and the one reader that wakes them."""

    def __init__(
        self,
        store: TaskStore,
        *,
        listener: EventListener | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self._store = store
        self._listener = listener
        self._poll_interval = poll_interval
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._someone = asyncio.Event()  # set while anyone waits: the poller's gate
        self.closing = False  # the server is stopping: streams end, clients resume elsewhere

    def close(self) -> None:
        """End every wait now and every later one at once (a graceful stop has begun)."""
        self.closing = True
        self.changed(None)

    @property
    def waiting(self) -> int:
        """How many waiters there are now (streams and long-polls)."""
        return sum(len(waiters) for waiters in self._waiters.values())

    async def run(self) -> None:
        """Wake waiters as events are recorded, until cancelled."""
        if self._listener is not None:
            await self._listener.run(self.changed)
        else:
            await self._poll()

    def changed(self, task_id: str | None) -> None:
        """Wake the waiters of ``task_id`` (of every task for None)."""
        if task_id is None:
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.set()
            return
        for waiter in self._waiters.get(task_id, ()):
            waiter.set()

    async def _poll(self) -> None:
        cursor: int | None = None
        while True:
            if not self._waiters:
                cursor = None  # nobody waits: read nothing until someone does
                self._someone.clear()
                await self._someone.wait()
            try:
                if cursor is None:
                    cursor = await self._store.last_event()
                    self.changed(None)  # what came before the cursor: waiters read it
                else:
                    feed = await self._store.event_feed(cursor, limit=FEED_BATCH)
                    for seq, task_id in feed:
                        self.changed(task_id)
                        cursor = seq
                    if len(feed) == FEED_BATCH:
                        continue  # more is waiting: read on at once
            except ReelgateError as exc:  # the database is away: waiters time out and read
                log.warning("reading task events: %s", exc.message)
            except Exception:  # never let the one reader die: streams would only time out
                log.exception("reading task events failed")
            await asyncio.sleep(self._poll_interval)

    async def wait(self, task_id: str, after: int, timeout: float) -> list[Event]:
        """The task's events after ``after``, as soon as there are some; [] after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(waiter)
        self._someone.set()
        try:
            while True:
                waiter.clear()  # before the read: a change after it wakes the wait below
                events = await self._store.events_after(task_id, after)
                remaining = deadline - loop.time()
                if events or remaining <= 0 or self.closing:
                    return events
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.wait()
        finally:
            waiters = self._waiters[task_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[task_id]

    async def last_seq(self, task_id: str) -> int:
        """The cursor after the task's last event so far (0 when it has none)."""
        last = 0
        while True:
            events = await self._store.events_after(task_id, last, limit=500)
            if events:
                last = events[-1].seq
            if len(events) < 500:
                return last
