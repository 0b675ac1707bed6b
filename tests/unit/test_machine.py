"""The one status machine: phases, the wire statuses they show, and every SQL statement."""

from __future__ import annotations

import re

import pytest

from reelgate.domain.errors import IllegalTransition
from reelgate.domain.polling import backoff, next_poll
from reelgate.domain.progress import default_expected, estimate, learn
from reelgate.domain.routing import Candidate, assign
from reelgate.domain.status import MOVES, SUCCEEDS_FROM, Phase, Status, check_move
from reelgate.ports import Move
from reelgate.store import sql


def test_every_phase_shows_one_wire_status() -> None:
    assert {p: p.status for p in Phase} == {
        Phase.QUEUED: Status.SUBMITTED,
        Phase.SUBMITTING: Status.SUBMITTED,
        Phase.RENDERING: Status.IN_PROGRESS,
        Phase.WATCHING: Status.IN_PROGRESS,
        Phase.REHOSTING: Status.IN_PROGRESS,
        Phase.DONE: None,
    }


@pytest.mark.parametrize("source", list(Phase))
@pytest.mark.parametrize("target", list(Phase))
@pytest.mark.parametrize("outcome", [None, *Status])
def test_check_move_is_exactly_the_table(source: Phase, target: Phase, outcome: Status) -> None:
    allowed = target in MOVES[source]
    if target is Phase.DONE:
        allowed = allowed and outcome is not None and outcome.terminal
        allowed = allowed and (outcome is not Status.SUCCESS or source in SUCCEEDS_FROM)
    if allowed:
        shown = check_move(source, target, outcome)
        assert shown is (outcome if target is Phase.DONE else target.status)
    else:
        with pytest.raises(IllegalTransition):
            check_move(source, target, outcome)


def _phases(text: str) -> set[str]:
    return set(re.findall(r"'(\w+)'", text))


# The hand-written statements of local renders: (statement, phases it may start from,
# the phase it sets, or None when it keeps the phase).
HAND_WRITTEN = {
    "CLAIM": (sql.CLAIM.format(chosen="1=1", claimable=sql.CLAIMABLE, columns="id"), "rendering"),
    "HEARTBEAT": (sql.HEARTBEAT.format(greatest="MAX"), None),
    "FINISH": (sql.FINISH, "done"),
    "RELEASE": (sql.RELEASE, None),
    "EXPIRE": (sql.EXPIRE, "done"),
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_statements_follow_the_machine(name: str) -> None:
    statement, target = HAND_WRITTEN[name]
    assignments, where = statement.split("WHERE", 1)
    set_phase = re.search(r"phase = '(\w+)'", assignments)
    assert (set_phase.group(1) if set_phase else None) == target
    sources = {p for p in _phases(where) if p in {ph.value for ph in Phase}}
    assert sources, f"{name} names no phase in its WHERE"
    for source in sources:
        destination = Phase(target) if target else Phase(source)
        outcome = Status.ERROR if destination is Phase.DONE else None
        check_move(Phase(source), destination, outcome)


def test_generated_moves_name_their_phases_and_holder() -> None:
    move = Move(
        "t1",
        frozenset({Phase.WATCHING, Phase.REHOSTING}),
        Phase.DONE,
        5.0,
        Status.ERROR,
        holder=("watcher", "p1"),
        fields={"error_code": "x", "progress": 3},
    )
    statement, params = sql.move_statement(move, greatest="MAX")
    assert "phase IN ('rehosting', 'watching')" in statement
    assert "watcher = :m_holder" in statement and params["m_holder"] == "p1"
    assert "progress = MAX(progress, :f_progress)" in statement
    assert params["m_status"] == "ERROR" and params["m_phase"] == "done"
    with pytest.raises(ValueError, match="cannot set column"):
        sql.move_statement(
            Move("t1", frozenset({Phase.WATCHING}), Phase.WATCHING, 1.0, fields={"owner": "x"}),
            greatest="MAX",
        )


def test_progress_estimate_is_monotone_and_below_100() -> None:
    values = [estimate(t / 10, 60.0) for t in range(0, 6000)]
    assert values == sorted(values)
    assert values[0] == 0 and max(values) <= 99
    assert estimate(60.0, 60.0) == 90
    assert default_expected(5) == 60.0
    assert learn(None, 10.0) == 10.0 and learn(10.0, 20.0) == pytest.approx(12.0)


def test_polls_come_sooner_near_the_expected_finish_and_back_off_after() -> None:
    def interval(elapsed: float) -> float:
        return next_poll(elapsed=elapsed, expected=100.0, min_interval=2.0, max_interval=30.0)

    assert interval(0) == 30.0
    assert interval(80) == 10.0
    assert interval(99) == 2.0
    assert interval(150) > interval(110) > 2.0
    assert interval(10_000) == 30.0
    assert backoff(1, base=2.0, cap=60.0) <= 2.0
    assert backoff(20, base=2.0, cap=60.0) <= 60.0
    assert backoff(1, base=2.0, cap=60.0, retry_after=45.0) == 45.0


def test_admission_takes_routes_in_order_and_leaves_the_rest_waiting() -> None:
    def queued(i: int, model: str = "m") -> Candidate:
        return Candidate(f"t{i}", model, Phase.QUEUED, None, None, None, 0)

    lost = Candidate("lost", "m", Phase.SUBMITTING, "b", "up-b", 1.0, 1)
    routes = {"m": [("a", "up-a"), ("b", "up-b")]}
    picks = assign(
        [lost, queued(1), queued(2), queued(3), queued(4, "other")],
        {"a": 1, "b": 1},
        routes,
        {"a": 2, "b": 2},
        limit=10,
    )
    assert [(p.candidate.id, p.provider, p.lost) for p in picks] == [
        ("lost", "b", True),
        ("t1", "a", False),
        ("t2", "b", False),
    ]
