"""The task status machine of the contract (API.md, "The status machine")."""

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

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.SUBMITTED: frozenset({Status.IN_PROGRESS, Status.FAILED, Status.ERROR}),
    # IN_PROGRESS -> IN_PROGRESS is a retry after a crash (a new lease).
    Status.IN_PROGRESS: frozenset(
        {Status.IN_PROGRESS, Status.SUCCESS, Status.FAILED, Status.ERROR}
    ),
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
    Status.ERROR: frozenset(),
}


def check_terminal(target: Status) -> None:
    """Raise ``IllegalTransition`` unless ``target`` ends a task."""
    if not target.terminal:
        raise IllegalTransition(f"a task can only finish as SUCCESS, FAILED or ERROR, not {target}")


def check_transition(current: Status, target: Status) -> None:
    """Raise ``IllegalTransition`` unless the machine allows ``current -> target``."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"a task cannot move from {current} to {target}")
