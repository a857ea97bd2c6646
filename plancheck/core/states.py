"""plancheck's vocabulary of states: what a run, a chunk, an execution attempt and a follow-up can be.

Everything that names a state derives it from here: the CHECK constraints of the models, the
store's statements, the metrics and the CLI's rendering. `sql_list` turns a set of states into the
SQL list the constraints and statements use.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class RunStatus(StrEnum):
    """A plan check run: waiting to be claimed, claimed or executing, or finished one way or another."""

    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


FINAL_STATUSES = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELED})
UNFINISHED_STATUSES = frozenset({RunStatus.AVAILABLE, RunStatus.RUNNING})


class ChunkStatus(StrEnum):
    """A chunk of a fanned-out run; a finished chunk's results move into its run and the row goes."""

    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"


class AttemptOutcome(StrEnum):
    """How one execution (of a run, or of a chunk) ended; an open execution has no outcome yet."""

    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    LOST = "LOST"  # its lease expired: the worker died or its message never arrived
    SUPERSEDED = "SUPERSEDED"  # the run was re-run (or ended) while it executed


# Outcomes of a run's own execution that ended the run; LOST and SUPERSEDED did not.
FINISHING_OUTCOMES = frozenset({AttemptOutcome.DONE, AttemptOutcome.FAILED, AttemptOutcome.CANCELED})


class FollowUpKind(StrEnum):
    """What a DONE run triggers through the outbox."""

    APPROVAL_FIND = "approval.find"
    ROLLOUT_CREATE = "rollout.create"


class IssueStatus(StrEnum):
    OPEN = "OPEN"
    DONE = "DONE"
    CANCELED = "CANCELED"


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class RolloutTaskStatus(StrEnum):
    """A rollout task is created PENDING; the deployment tool that executes it moves it on."""

    PENDING = "PENDING"


class Risk(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


def sql_list(states: Iterable[StrEnum]) -> str:
    """`'A', 'B'` for `IN (…)` in constraints and statements, in declaration order (states are constants)."""
    return ", ".join(f"'{state}'" for state in sorted(states, key=_declared_position))


def _declared_position(state: StrEnum) -> int:
    return list(type(state)).index(state)
