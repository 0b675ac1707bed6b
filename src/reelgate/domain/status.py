"""The one status machine of a task: internal phases, and the wire status each shows.

A task's life is a walk through ``Phase``; its wire status (API.md, "The status
machine") is a projection of the phase, so the two can never disagree::

    QUEUED ──────────► RENDERING ───────────────────────────► DONE (SUCCESS)
      │  ▲  (local)        └─ RENDERING (a retry after a crash)   ▲
      │  │ not accepted: back to the queue, with backoff          │
      ▼  │                                                        │
    SUBMITTING ──► WATCHING ──► REHOSTING ─────────────────────────┘
    (remote: intent    (upstream id    (streaming the upstream
     recorded)          known)          video into our storage)

    Any phase but DONE may also end in DONE as FAILED or ERROR; a cancel is such a
    move (FAILED, error code ``cancelled``) from any phase in ``CANCELLABLE``.

QUEUED and SUBMITTING show as SUBMITTED; RENDERING, WATCHING and REHOSTING as
IN_PROGRESS; DONE shows the terminal status it ended with. ``MOVES`` is the only
definition of the allowed moves: the stores generate their conditional updates
from it (``reelgate.store.sql``), and ``ALLOWED`` (the wire machine) is derived
from it.
"""

from __future__ import annotations

from enum import StrEnum

from reelgate.domain.errors import IllegalTransition


class Status(StrEnum):
    """A task's status, spelled as on the wire."""

    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    ERROR = "ERROR"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.ERROR})


class Phase(StrEnum):
    """Where a task is in its life; finer than the wire status."""

    QUEUED = "queued"  # waiting for a local renderer or for an upstream's capacity
    SUBMITTING = "submitting"  # remote: the intent is recorded, the request may be in flight
    RENDERING = "rendering"  # local: a worker holds the lease and renders
    WATCHING = "watching"  # remote: the upstream has the task; pollers check it
    REHOSTING = "rehosting"  # remote: the upstream finished; its video is being copied
    DONE = "done"  # terminal: SUCCESS, FAILED or ERROR

    @property
    def status(self) -> Status | None:
        """The wire status this phase shows; None for DONE (its outcome decides)."""
        return _SHOWN.get(self)


_SHOWN = {
    Phase.QUEUED: Status.SUBMITTED,
    Phase.SUBMITTING: Status.SUBMITTED,
    Phase.RENDERING: Status.IN_PROGRESS,
    Phase.WATCHING: Status.IN_PROGRESS,
    Phase.REHOSTING: Status.IN_PROGRESS,
}

# The allowed moves between phases: the one definition of the machine.
MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.RENDERING, Phase.SUBMITTING, Phase.DONE}),
    # SUBMITTING -> SUBMITTING: a lost submission taken over, or a fallback route chosen.
    # SUBMITTING -> QUEUED: the upstream did not accept; wait (still SUBMITTED) and retry.
    Phase.SUBMITTING: frozenset({Phase.SUBMITTING, Phase.QUEUED, Phase.WATCHING, Phase.DONE}),
    # RENDERING -> RENDERING: a retry after a crash (a new lease).
    Phase.RENDERING: frozenset({Phase.RENDERING, Phase.DONE}),
    Phase.WATCHING: frozenset({Phase.WATCHING, Phase.REHOSTING, Phase.DONE}),
    Phase.REHOSTING: frozenset({Phase.REHOSTING, Phase.DONE}),
    Phase.DONE: frozenset(),
}

# Only these phases can end in SUCCESS: a video exists there.
SUCCEEDS_FROM = frozenset({Phase.RENDERING, Phase.REHOSTING})

# Cancellation: from every phase that is not DONE, one move to DONE as FAILED with
# error code ``CANCELLED`` (one conditional statement naming all these phases). A
# finished task cannot be cancelled.
CANCELLABLE = frozenset(phase for phase, targets in MOVES.items() if Phase.DONE in targets)
CANCELLED = "cancelled"
CANCELLED_MESSAGE = "the task was cancelled"
CANCELLED_STATUS = Status.FAILED


def _wire_moves() -> dict[Status, frozenset[Status]]:
    moves: dict[Status, set[Status]] = {status: set() for status in Status}
    for source, targets in MOVES.items():
        shown = source.status
        if shown is None:
            continue
        for target in targets:
            if target is Phase.DONE:
                ends = TERMINAL if source in SUCCEEDS_FROM else TERMINAL - {Status.SUCCESS}
                moves[shown].update(ends)
            elif target.status is not shown or shown is Status.IN_PROGRESS:
                # SUBMITTED -> SUBMITTED is no visible move; IN_PROGRESS -> IN_PROGRESS
                # is (a new lease, a new phase), as the contract has always said.
                moves[shown].add(target.status)  # type: ignore[arg-type]
    return {status: frozenset(targets) for status, targets in moves.items()}


# The wire machine (API.md), derived from MOVES.
ALLOWED: dict[Status, frozenset[Status]] = _wire_moves()


def check_terminal(target: Status) -> None:
    """Raise ``IllegalTransition`` unless ``target`` ends a task."""
    if not target.terminal:
        raise IllegalTransition(f"a task can only finish as SUCCESS, FAILED or ERROR, not {target}")


def check_transition(current: Status, target: Status) -> None:
    """Raise ``IllegalTransition`` unless the wire machine allows ``current -> target``."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"a task cannot move from {current} to {target}")


def check_move(source: Phase, target: Phase, outcome: Status | None = None) -> Status:
    """Check ``source -> target`` against ``MOVES``; return the wire status after it.

    A move to DONE names its ``outcome`` (SUCCESS only from a phase with a video).
    """
    if target not in MOVES[source]:
        raise IllegalTransition(f"a task cannot move from phase {source} to {target}")
    if target is not Phase.DONE:
        return target.status  # type: ignore[return-value]
    if outcome is None or not outcome.terminal:
        raise IllegalTransition(f"a task ends as SUCCESS, FAILED or ERROR, not {outcome}")
    if outcome is Status.SUCCESS and source not in SUCCEEDS_FROM:
        raise IllegalTransition(f"a task in phase {source} has no video to succeed with")
    return outcome
