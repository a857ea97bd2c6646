"""How a checks document reads: results grouped by target (most severe first), counted by level,
with positions, summary lines and durations as text, and the document as JSON.

The CLI and the HTTP server both present the API's `Checks`; this is what they share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from plancheck.checks.result import Status

SUMMARY_TYPE = "STATEMENT_SUMMARY_REPORT"
LEVELS: tuple[str, ...] = (Status.ERROR, Status.WARNING, Status.SUCCESS)


@dataclass(frozen=True)
class TargetResults:
    """One target's findings, most severe first, and its summary report (if any)."""

    target: str
    findings: list[Mapping[str, Any]]
    summaries: list[Mapping[str, Any]]

    def count(self, level: str) -> int:
        return sum(1 for finding in self.findings if finding.get("status") == level)


def _level_rank(result: Mapping[str, Any]) -> int:
    status = result.get("status")
    return LEVELS.index(status) if status in LEVELS else len(LEVELS)


def _position_key(result: Mapping[str, Any]) -> tuple[int, int]:
    position = result.get("position") or {}
    return (int(position.get("line") or 0), int(position.get("column") or 0))


def group_results(results: Iterable[Mapping[str, Any]]) -> list[TargetResults]:
    """Results grouped by target (targets in name order); within a target ERROR, then WARNING, then
    SUCCESS, each in statement order. STATEMENT_SUMMARY_REPORT results are kept apart."""
    by_target: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        by_target.setdefault(str(result.get("target", "")), []).append(result)
    groups = []
    for target in sorted(by_target):
        items = by_target[target]
        findings = [r for r in items if r.get("type") != SUMMARY_TYPE]
        findings.sort(key=lambda r: (_level_rank(r), _position_key(r), str(r.get("title", ""))))
        summaries = [r for r in items if r.get("type") == SUMMARY_TYPE]
        groups.append(TargetResults(target, findings, summaries))
    return groups


def level_counts(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many non-summary results there are at each level."""
    counts = dict.fromkeys(LEVELS, 0)
    for result in results:
        if result.get("type") != SUMMARY_TYPE and result.get("status") in counts:
            counts[result["status"]] += 1
    return counts


def position_text(result: Mapping[str, Any]) -> str:
    position = result.get("position")
    if not position:
        return ""
    return f"{position.get('line', '?')}:{position.get('column', 1)}"


def summary_text(summary: Mapping[str, Any]) -> str:
    """The summary report as one line: the check's own description, else built from the report."""
    if summary.get("content"):
        return str(summary["content"])
    report = summary.get("report") or {}
    types = ", ".join(f"{kind} {count}" for kind, count in (report.get("statement_types") or {}).items())
    tables = ", ".join(f"{t.get('schema')}.{t.get('table')}" for t in report.get("changed_resources") or [])
    parts = [types or "no statements", f"~{report.get('affected_rows', 0):,} rows affected"]
    if tables:
        parts.append(f"tables: {tables}")
    return "; ".join(parts)


def duration_text(started: Any, finished: Any) -> str:
    if isinstance(started, str):
        started = datetime.fromisoformat(started)
    if isinstance(finished, str):
        finished = datetime.fromisoformat(finished)
    if not isinstance(started, datetime) or not isinstance(finished, datetime):
        return ""
    return f"{(finished - started).total_seconds():.1f}s"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_text(data: Any) -> str:
    """One JSON document; datetimes as ISO 8601."""
    return json.dumps(data, default=_json_default, indent=2, sort_keys=False)
