"""The result shape every check produces, shared by the advisor, the summary report and the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"


class CheckType(StrEnum):
    STATEMENT_ADVISE = "STATEMENT_ADVISE"
    STATEMENT_SUMMARY_REPORT = "STATEMENT_SUMMARY_REPORT"


@dataclass(frozen=True)
class Position:
    """1-based line and column of a statement (or of the offending token) in the sheet."""

    line: int
    column: int = 1


@dataclass(frozen=True)
class CheckResult:
    """One finding of one check against one target; serialised into plan_check_run.result."""

    status: Status
    type: CheckType
    target: str
    title: str
    content: str = ""
    code: int = 0
    position: Position | None = None
    report: dict[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        data["type"] = str(self.type)
        return data
