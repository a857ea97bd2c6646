"""What the results page shows, computed from a plan and its checks document; no HTTP, no HTML here.

Everything reads the checks document generically: keys it does not know (a newer run model's
fields) are kept and shown as they are, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plancheck.api.present import SUMMARY_TYPE, TargetResults, group_results, level_counts

# Beyond this many lines the page shows only the lines with findings and a little context.
MAX_FULL_SQL_LINES = 3000
CONTEXT_LINES = 2
ATTEMPT_COLUMNS = ("generation", "attempt", "worker", "claimed_at", "started_at", "finished_at", "outcome")
CHECKS_KEYS = ("plan_id", "status", "results", "reason", "targets_total", "targets_done", "attempts", "generation")


@dataclass
class Marker:
    """One finding on one SQL line, merged across the targets that report it."""

    level: str
    rule: str
    message: str
    targets: list[str] = field(default_factory=list)


@dataclass
class SqlLine:
    number: int | None  # None: a gap of lines left out
    text: str
    markers: list[Marker] = field(default_factory=list)

    @property
    def level(self) -> str | None:
        """The most severe level marked on the line."""
        levels = {marker.level for marker in self.markers}
        return next((level for level in ("ERROR", "WARNING") if level in levels), None)


@dataclass(frozen=True)
class TargetView:
    target: str
    findings: list[Mapping[str, Any]]
    summaries: list[Mapping[str, Any]]
    counts: dict[str, int]


def markers_by_line(results: Iterable[Mapping[str, Any]]) -> dict[int, list[Marker]]:
    """Non-summary ERROR and WARNING findings that carry a line, merged by (line, level, rule)."""
    merged: dict[tuple[int, str, str], Marker] = {}
    for result in results:
        level = str(result.get("status", ""))
        line = (result.get("position") or {}).get("line")
        if result.get("type") == SUMMARY_TYPE or level not in ("ERROR", "WARNING") or not isinstance(line, int):
            continue
        rule = str(result.get("title", ""))
        marker = merged.setdefault((line, level, rule), Marker(level, rule, str(result.get("content", ""))))
        marker.targets.append(str(result.get("target", "")))
    by_line: dict[int, list[Marker]] = {}
    for (line, _, _), marker in sorted(merged.items(), key=lambda item: (item[0][0], item[0][1] != "ERROR")):
        by_line.setdefault(line, []).append(marker)
    return by_line


def sql_lines(sql: str, results: Iterable[Mapping[str, Any]]) -> list[SqlLine]:
    """The SQL's lines with their findings; a very long script keeps only marked lines and context."""
    markers = markers_by_line(results)
    texts = sql.splitlines() or [""]
    shown = range(1, len(texts) + 1)
    if len(texts) > MAX_FULL_SQL_LINES:
        near = {n for line in markers for n in range(line - CONTEXT_LINES, line + CONTEXT_LINES + 1)}
        shown = sorted(n for n in near if 1 <= n <= len(texts))  # type: ignore[assignment]
    lines: list[SqlLine] = []
    previous = 0
    for number in shown:
        if number > previous + 1:
            lines.append(SqlLine(None, f"… {number - previous - 1} line(s) without findings …"))
        lines.append(SqlLine(number, texts[number - 1], markers.get(number, [])))
        previous = number
    if previous < len(texts):
        lines.append(SqlLine(None, f"… {len(texts) - previous} line(s) without findings …"))
    return lines


def target_views(results: Sequence[Mapping[str, Any]]) -> list[TargetView]:
    """One section per target: its findings (most severe first), summary reports and counts."""
    return [_target_view(group) for group in group_results(results)]


def _target_view(group: TargetResults) -> TargetView:
    return TargetView(group.target, group.findings, group.summaries, level_counts(group.findings))


def attempt_columns(attempts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The known attempt columns present, then any others in the order they first appear."""
    present = [key for attempt in attempts for key in attempt]
    known = [column for column in ATTEMPT_COLUMNS if column in present]
    return known + list(dict.fromkeys(key for key in present if key not in ATTEMPT_COLUMNS))


def extra_fields(checks: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields of the checks document this page has no section for, shown as they are."""
    return {key: value for key, value in checks.items() if key not in CHECKS_KEYS}
