"""What the results page shows, from a checks document: markers on SQL lines, excerpts of long
scripts, per-target sections, and fields the page does not know kept as they are."""

from __future__ import annotations

from typing import Any

from plancheck.server import views


def finding(target: str, level: str, rule: str, line: int | None, message: str = "msg") -> dict[str, Any]:
    position = {"line": line, "column": 1} if line is not None else None
    return {
        "target": target,
        "status": level,
        "type": "STATEMENT_ADVISE",
        "title": rule,
        "content": message,
        "code": 1,
        "position": position,
        "report": None,
    }


SUMMARY = {
    "target": "i/a",
    "status": "SUCCESS",
    "type": "STATEMENT_SUMMARY_REPORT",
    "title": "Summary report",
    "content": "1 statement",
    "position": {"line": 1, "column": 1},
    "report": {"affected_rows": 5},
}


def test_findings_are_merged_per_line_level_and_rule_across_targets() -> None:
    results = [
        finding("i/a", "WARNING", "index.create-concurrently", 2),
        finding("i/a", "ERROR", "statement.where-require-update-delete", 2, "first"),
        finding("i/b", "ERROR", "statement.where-require-update-delete", 2, "second"),
        finding("i/a", "SUCCESS", "OK", 1),
        finding("i/a", "ERROR", "syntax", None),
        SUMMARY,
    ]
    markers = views.markers_by_line(results)
    assert list(markers) == [2]
    error, warning = markers[2]
    assert (error.level, error.rule, error.message, error.targets) == (
        "ERROR",
        "statement.where-require-update-delete",
        "first",
        ["i/a", "i/b"],
    )
    assert (warning.level, warning.targets) == ("WARNING", ["i/a"])


def test_every_line_of_a_short_script_is_shown_with_its_most_severe_level() -> None:
    sql = "SELECT 1;\nDELETE FROM t;\nCREATE INDEX i ON t (a);"
    lines = views.sql_lines(
        sql, [finding("i/a", "WARNING", "r1", 3), finding("i/a", "ERROR", "r2", 2), finding("i/a", "WARNING", "r3", 2)]
    )
    assert [(line.number, line.text, line.level) for line in lines] == [
        (1, "SELECT 1;", None),
        (2, "DELETE FROM t;", "ERROR"),
        (3, "CREATE INDEX i ON t (a);", "WARNING"),
    ]


def test_a_long_script_keeps_marked_lines_with_context_and_says_what_it_left_out() -> None:
    total = views.MAX_FULL_SQL_LINES + 500
    sql = "\n".join(f"SELECT {n};" for n in range(1, total + 1))
    lines = views.sql_lines(sql, [finding("i/a", "ERROR", "r", 10), finding("i/a", "WARNING", "r", 3000)])
    numbers = [line.number for line in lines]
    assert numbers == [None, *range(8, 13), None, *range(2998, 3003), None]
    gaps = [line.text for line in lines if line.number is None]
    assert gaps == [
        "… 7 line(s) without findings …",
        "… 2985 line(s) without findings …",
        f"… {total - 3002} line(s) without findings …",
    ]


def test_a_script_without_findings_or_text_still_renders() -> None:
    assert [(line.number, line.markers) for line in views.sql_lines("", [])] == [(1, [])]


def test_targets_get_their_findings_most_severe_first_and_their_summary() -> None:
    results = [
        finding("i/b", "WARNING", "w", 1),
        finding("i/a", "WARNING", "w", 5),
        finding("i/a", "ERROR", "e", 9),
        SUMMARY,
    ]
    sections = views.target_views(results)
    assert [section.target for section in sections] == ["i/a", "i/b"]
    first = sections[0]
    assert [item["status"] for item in first.findings] == ["ERROR", "WARNING"]
    assert first.summaries == [SUMMARY]
    assert first.counts == {"ERROR": 1, "WARNING": 1, "SUCCESS": 0}


def test_unknown_attempt_and_document_fields_are_kept() -> None:
    attempts = [
        {"generation": 1, "attempt": 1, "worker": "w", "started_at": "t", "outcome": None},
        {"generation": 1, "attempt": 2, "chunk": 3, "worker": "w", "lease": 15},
    ]
    assert views.attempt_columns(attempts) == [
        "generation",
        "attempt",
        "worker",
        "started_at",
        "outcome",
        "chunk",
        "lease",
    ]
    document = {
        "plan_id": 1,
        "status": "DONE",
        "results": [],
        "attempts": [],
        "chunks": [{"chunk": 1}],
        "generation": 1,
        "reason": None,
        "targets_total": 1,
        "targets_done": 1,
    }
    assert views.extra_fields(document) == {"chunks": [{"chunk": 1}]}
