"""Approval finding: how risky a checked plan is, and who must approve it (pure logic)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DDL_PREFIXES = ("CREATE_", "ALTER_", "DROP_", "RENAME", "TRUNCATE", "COMMENT")
APPROVERS = {"HIGH": ["project-owner", "dba"], "MEDIUM": ["project-owner"], "LOW": []}
DEFAULT_AFFECTED_ROWS_THRESHOLD = 10_000


@dataclass(frozen=True)
class Approval:
    risk: str
    approvers: list[str]
    reasons: list[str]


def _is_ddl(statement_type: str) -> bool:
    return statement_type.startswith(DDL_PREFIXES)


def assess(
    results: Iterable[Mapping[str, Any]], environments: Mapping[str, str], affected_rows_threshold: int
) -> Approval:
    """HIGH for any ERROR, DDL against a prod target, or affected rows over the project's threshold;
    MEDIUM for warnings or a row estimate the summary report says cannot be trusted (a guess is never
    LOW); LOW otherwise. `environments` maps target name to its environment."""
    high: list[str] = []
    uncertain: list[str] = []
    warnings = 0
    for result in results:
        target = result.get("target", "")
        if result.get("status") == "ERROR":
            high.append(f"{target}: {result.get('title')}")
        warnings += result.get("status") == "WARNING"
        report = result.get("report") or {}
        ddl = [kind for kind in report.get("statement_types", {}) if _is_ddl(kind)]
        if ddl and environments.get(target) == "prod":
            high.append(f"{target}: DDL ({', '.join(sorted(ddl))}) on a prod database")
        affected = report.get("affected_rows") or 0
        if affected > affected_rows_threshold:
            high.append(f"{target}: ~{affected} affected rows exceeds {affected_rows_threshold}")
        if report.get("estimate_reliable") is False:
            doubts = "; ".join(report.get("estimate_doubts") or ()) or "no reason given"
            uncertain.append(f"{target}: ~{affected} affected rows is a guess ({doubts})")
    if high:
        return Approval("HIGH", APPROVERS["HIGH"], high)
    if warnings or uncertain:
        return Approval("MEDIUM", APPROVERS["MEDIUM"], [f"{warnings} warning(s)"] * bool(warnings) + uncertain)
    return Approval("LOW", APPROVERS["LOW"], [])
