"""Cancellation in the one status machine: every phase but DONE, one statement."""

from __future__ import annotations

import re

import pytest

from reelgate.domain.errors import IllegalTransition
from reelgate.domain.status import CANCELLABLE, CANCELLED, MOVES, Phase, Status, check_move
from reelgate.store import sql


def test_every_running_phase_is_cancellable_and_done_is_not() -> None:
    assert set(Phase) - CANCELLABLE == {Phase.DONE}
    for phase in CANCELLABLE:
        assert Phase.DONE in MOVES[phase]
        assert check_move(phase, Phase.DONE, Status.FAILED) is Status.FAILED
    with pytest.raises(IllegalTransition):
        check_move(Phase.DONE, Phase.DONE, Status.FAILED)


def test_the_cancel_is_one_conditional_statement_naming_every_running_phase() -> None:
    move = sql.cancel_move("task_x", 5.0)
    assert move.status() is Status.FAILED and move.holder is None
    statement, params = sql.move_statement(move, greatest="MAX")
    assert statement.count("UPDATE") == 1
    where = statement.split("WHERE", 1)[1]
    assert set(re.findall(r"'(\w+)'", where)) == {phase.value for phase in CANCELLABLE}
    assert params["f_error_code"] == CANCELLED and params["m_status"] == "FAILED"
    assert params["m_phase"] == "done" and params["m_detail"] == CANCELLED
    assert "lease_owner = NULL" in statement and "watcher = NULL" in statement
