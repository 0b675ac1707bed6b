"""Render processes: each child runs one render at a time, over a pipe of its own.

``RenderProcesses`` keeps up to ``processes`` children, started on demand and reused.
A render sends its job down a child's pipe; progress values and then the outcome come
back in order, read on the event loop (``add_reader``): no relay thread, no lock that a
dying child could leave held. A child that dies mid-render (the OOM killer, ``kill
-9``) fails only the render it was running, with ``RenderError`` code ``RENDER_CRASHED``,
and the next render gets a new child; renders in the other children never notice (in a
shared ``ProcessPoolExecutor``, one dead child breaks every future of the pool).

The children never outlive their parent, however it dies: each asks the kernel for a
SIGKILL when its parent dies (``PR_SET_PDEATHSIG``, Linux), and a thread in each blocks
on a liveness pipe whose only writer is the parent and ends the child at its
end-of-file (any POSIX system, and the instant before the ``prctl``). They ignore SIGINT
and SIGTERM: a signal sent to the whole process group (Ctrl-C in a terminal, systemd's
default ``KillMode``) must not end a render under its parent, which decides when renders
stop (it hands their tasks back, then kills its children with SIGKILL). Children are
started with ``spawn``, not ``forkserver`` (a SIGTERM to the group would kill the fork
server), from the thread that runs the event loop: the death signal follows the thread
that started a child, so that thread must live as long as the children.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import ctypes
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from reelgate.domain.errors import RenderError, Unavailable
from reelgate.ports import ProgressFn, RenderJob
from reelgate.renderers import RENDER_CRASHED

# What a child runs: ``work(job, out_path, report, **options)``, a module-level function
# (it is pickled by name). It raises ``RenderError`` or ``Unavailable`` on failure.
Work = Callable[..., None]

START_METHOD: Final = "spawn"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_REAP_SECONDS = 2.0  # how long to wait for a killed child to be gone


class RenderProcesses:
    """Up to ``processes`` children running ``work``, one job each at a time.

    The children lower their priority by ``nice`` so that the parent's API keeps
    answering. Cancelling ``run`` (or a progress callback that raises) kills the child
    of that job at once and deletes its file.
    """

    def __init__(self, work: Work, *, processes: int, nice: int = 0, name: str = "render"):
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self._work = work
        self._processes = processes
        self._nice = nice
        self._name = name
        self._context = multiprocessing.get_context(START_METHOD)
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def run(
        self, job: RenderJob, out_path: Path, progress: ProgressFn, **options: object
    ) -> None:
        """Run ``work`` on ``job`` in a child, awaiting ``progress`` with its values in order.

        Raises the child's ``RenderError`` (``RenderRejected`` too) or ``Unavailable`` as
        raised there (they pickle with their message, code and notes), ``RenderError``
        code ``RENDER_CRASHED`` when the child died, or whatever ``progress`` raised.
        """
        request = (job, out_path, options)
        child = await self._acquire()
        try:
            if not await child.send(request):  # it died while idle: no fault of this job's,
                self._release(child)  # so it gets another child (a new process)
                child = await self._acquire()
                if not await child.send(request):
                    raise child.crashed()
            await child.follow(out_path, progress)
        finally:
            self._release(child)

    async def close(self) -> None:
        """Kill every child (SIGKILL: they ignore SIGTERM) and wait until they are gone.

        Jobs still running then fail with ``RENDER_CRASHED``. A later ``run`` starts
        afresh.
        """
        children = [*self._idle, *self._busy]
        self._idle.clear()
        for child in children:
            child.kill()
        await asyncio.to_thread(_reap_all, children)

    async def _acquire(self) -> _Child:
        """A child for one job: an idle one, a new one, or the next one to come free."""
        while True:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    self._busy.add(child)
                    return child
                child.kill()
                child.reap()
            if len(self._busy) < self._processes:
                child = _Child(self._context, self._work, self._nice, self._name)
                self._busy.add(child)
                return child
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but cancelled since: pass the turn on
                raise

    def _release(self, child: _Child) -> None:
        """Take a child back after a job: kept if it is well, else reaped."""
        if child not in self._busy:
            return
        self._busy.discard(child)
        if child.alive():
            self._idle.append(child)
        else:
            child.kill()
            child.reap()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Child:
    """One render process: its job pipe, and the liveness pipe that only we write."""

    def __init__(
        self, context: multiprocessing.context.SpawnContext, work: Work, nice: int, name: str
    ) -> None:
        self.conn, theirs = context.Pipe(duplex=True)
        alive_reader, self._alive = context.Pipe(duplex=False)
        self.name = name
        self.process = context.Process(
            target=_child_main,
            args=(theirs, alive_reader, os.getpid(), nice, work),
            name=f"reelgate-{name}",
            daemon=True,
        )
        try:
            self.process.start()
        finally:  # only the child holds these ends now: its death is their end-of-file
            theirs.close()
            alive_reader.close()
        self._dead = False
        _LIVE.add(self)

    def alive(self) -> bool:
        return not self._dead and self.process.is_alive()

    async def send(self, request: tuple[RenderJob, Path, Mapping[str, object]]) -> bool:
        """Hand the child a job (in a thread: an image can be megabytes); False if it died."""
        try:
            await asyncio.to_thread(self.conn.send, request)
        except (OSError, ValueError):  # ValueError: the connection was closed meanwhile
            self._dead = True
            return False
        except BaseException:  # cancelled mid-send: the child's state is unknown
            self.kill()
            raise
        return True

    async def follow(self, out_path: Path, progress: ProgressFn) -> None:
        """Await the child's progress (in order) and outcome for the job just sent.

        On any way out but the child's own outcome (it died, ``progress`` raised, the
        caller cancelled), the child is killed and ``out_path`` deleted.
        """
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        fd = self.conn.fileno()

        def readable() -> None:
            try:
                while self.conn.poll():
                    inbox.put_nowait(self.conn.recv())
            except Exception:  # end-of-file: the child is gone (or it sent garbage)
                loop.remove_reader(fd)
                inbox.put_nowait(("gone", None))

        loop.add_reader(fd, readable)
        answered = False
        try:
            while True:
                kind, value = await inbox.get()
                if kind == "progress":
                    await progress(value)
                elif kind == "done":
                    answered = True
                    if value is not None:
                        raise value
                    return
                else:
                    raise self.crashed()
        finally:
            loop.remove_reader(fd)
            if not answered:
                self.kill()
                self.reap()  # a SIGKILLed process is gone in moments
                out_path.unlink(missing_ok=True)

    def crashed(self) -> RenderError:
        """The error of a job whose child died; how it died is in the notes."""
        self.kill()
        self.reap()
        code = self.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        error = RenderError(
            f"the {self.name} render process died before it finished", code=RENDER_CRASHED
        )
        error.add_note(f"{self.name} render process {self.process.pid}: {how}")
        return error

    def kill(self) -> None:
        self._dead = True
        if self.process.exitcode is None:
            with contextlib.suppress(OSError, ValueError):
                self.process.kill()

    def reap(self, timeout: float = _REAP_SECONDS) -> None:
        """Wait (blocking) until the killed child is gone; close our ends of its pipes."""
        with contextlib.suppress(ValueError, AssertionError):
            self.process.join(timeout)
        self.conn.close()
        self._alive.close()
        _LIVE.discard(self)


_LIVE: weakref.WeakSet[_Child] = weakref.WeakSet()


@atexit.register
def _kill_live_children() -> None:
    """At exit, before multiprocessing joins its children: they ignore its SIGTERM."""
    for child in list(_LIVE):
        child.kill()


def _reap_all(children: list[_Child]) -> None:
    for child in children:
        child.reap()


# The child's side --------------------------------------------------------------------

_working_on: Path | None = None  # the file the child writes now, deleted if the parent dies


class _ParentGone(BaseException):
    """The pipe to the parent broke: nobody waits for this job any more."""


def _child_main(conn: Connection, alive: Connection, parent: int, nice: int, work: Work) -> None:
    """A render process: take jobs from ``conn`` one by one until the parent goes."""
    global _working_on
    _die_with_parent(parent, alive)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice:
        os.nice(nice)

    def report(value: int) -> None:
        try:
            conn.send(("progress", value))
        except OSError as exc:
            raise _ParentGone from exc

    while True:
        try:
            job, out_path, options = conn.recv()
            _working_on = out_path
            outcome = _outcome(work, job, out_path, report, options)
            _working_on = None
            conn.send(("done", outcome))
        except (EOFError, OSError, _ParentGone):
            return


def _outcome(
    work: Work,
    job: RenderJob,
    out_path: Path,
    report: Callable[[int], None],
    options: Mapping[str, Any],
) -> RenderError | Unavailable | None:
    """Run ``work``; the outcome as an exception that pickles (None: success)."""
    try:
        work(job, out_path, report, **options)
    except (RenderError, Unavailable) as exc:
        return exc  # they pickle with their message, code and notes
    except Exception as exc:  # anything else may not pickle: its text goes in a note
        error = RenderError("the renderer failed")
        error.add_note(f"render process: {exc!r}")
        return error
    return None


def _die_with_parent(parent: int, alive: Connection) -> None:
    """Die when the parent dies: the kernel's death signal, and a liveness-pipe watcher."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the death signal was asked for
        os._exit(1)
    watcher = threading.Thread(target=_watch_parent, args=(alive,), name="parent", daemon=True)
    watcher.start()


def _watch_parent(alive: Connection) -> None:
    """Block until the parent's end of ``alive`` closes (it never writes), then exit."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv_bytes()
    path = _working_on
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    os._exit(1)
