"""The CLI's pure rendering logic: grouping and ordering of results, exit codes, JSON, tables."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from plancheck.cli import render


def result(
    target: str,
    status: str,
    title: str = "rule",
    line: int | None = None,
    column: int = 1,
    kind: str = "STATEMENT_ADVISE",
    content: str = "",
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "type": kind,
        "target": target,
        "title": title,
        "content": content,
        "code": 0,
        "position": None if line is None else {"line": line, "column": column},
        "report": report,
    }


def summary(target: str, content: str = "", report: dict[str, Any] | None = None) -> dict[str, Any]:
    return result(
        target, "SUCCESS", "Statement summary", kind="STATEMENT_SUMMARY_REPORT", content=content, report=report
    )


@pytest.mark.parametrize(
    ("status", "levels", "code"),
    [
        ("DONE", [], 0),
        ("DONE", ["SUCCESS", "WARNING"], 0),
        ("DONE", ["SUCCESS", "ERROR"], 1),
        ("FAILED", [], 2),
        ("FAILED", ["ERROR"], 2),
        ("CANCELED", ["SUCCESS"], 2),
        ("RUNNING", ["SUCCESS"], 2),
        ("AVAILABLE", [], 2),
    ],
)
def test_exit_code(status: str, levels: list[str], code: int) -> None:
    assert render.exit_code(status, [result("i/db", level) for level in levels]) == code


def test_exit_code_counts_an_error_summary_too() -> None:
    error_summary = {**summary("i/db"), "status": "ERROR"}
    assert render.exit_code("DONE", [error_summary]) == 1


def test_group_results_sorts_targets_levels_and_positions() -> None:
    results = [
        result("b/db", "SUCCESS", "ok"),
        result("a/db", "WARNING", "w-late", line=9),
        summary("a/db", "2 statements"),
        result("a/db", "SUCCESS", "fine", line=1),
        result("a/db", "ERROR", "e-late", line=7, column=3),
        result("a/db", "WARNING", "w-early", line=2),
        result("a/db", "ERROR", "e-early", line=7, column=1),
        result("a/db", "ERROR", "no-position"),
    ]
    groups = render.group_results(results)
    assert [group.target for group in groups] == ["a/db", "b/db"]
    first = groups[0]
    assert [r["title"] for r in first.findings] == ["no-position", "e-early", "e-late", "w-early", "w-late", "fine"]
    assert [r["content"] for r in first.summaries] == ["2 statements"]
    assert (first.count("ERROR"), first.count("WARNING"), first.count("SUCCESS")) == (3, 2, 1)
    assert groups[1].summaries == []


def test_unknown_levels_sort_last() -> None:
    groups = render.group_results([result("t/db", "INFO", "x"), result("t/db", "SUCCESS", "y")])
    assert [r["title"] for r in groups[0].findings] == ["y", "x"]


def test_level_counts_ignore_summaries() -> None:
    results = [result("t/d", "ERROR"), result("t/d", "WARNING"), result("t/d", "WARNING"), summary("t/d")]
    assert render.level_counts(results) == {"ERROR": 1, "WARNING": 2, "SUCCESS": 0}


def test_position_and_summary_text() -> None:
    assert render.position_text(result("t/d", "ERROR", line=3, column=14)) == "3:14"
    assert render.position_text(result("t/d", "ERROR")) == ""
    assert render.summary_text(summary("t/d", "given line")) == "given line"
    report = {
        "statement_types": {"DELETE": 1, "UPDATE": 2},
        "affected_rows": 12400,
        "changed_resources": [{"schema": "public", "table": "orders", "row_estimate": 10}],
    }
    assert render.summary_text(summary("t/d", report=report)) == (
        "DELETE 1, UPDATE 2; ~12,400 rows affected; tables: public.orders"
    )


def test_progress_and_duration_text() -> None:
    assert render.progress_text("RUNNING", 1, 3, 2.345) == "RUNNING 1/3 targets, 2.3s elapsed"
    assert render.progress_text("AVAILABLE", 0, None, 0) == "AVAILABLE 0 targets, 0.0s elapsed"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert render.duration_text(start, start + timedelta(seconds=1.25)) == "1.2s"
    assert render.duration_text(start.isoformat(), (start + timedelta(seconds=2)).isoformat()) == "2.0s"
    assert render.duration_text(start, None) == ""


def test_json_text_handles_datetimes() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert json.loads(render.json_text({"at": moment, "ids": (1, 2)})) == {"at": moment.isoformat(), "ids": [1, 2]}


class FakeChecks:
    """The attributes of `plancheck.api.Checks` the renderer reads."""

    def __init__(self, status: str, results: list[dict[str, Any]], reason: str | None = None) -> None:
        self.plan_id = 7
        self.status = status
        self.results = results
        self.reason = reason
        self.targets_total = len({r["target"] for r in results}) if results else None
        self.targets_done = self.targets_total or 0
        start = datetime(2024, 1, 1, tzinfo=UTC)
        self.attempts = [
            {
                "generation": 1,
                "attempt": 1,
                "worker": "w1@host:42",
                "claimed_at": start,
                "started_at": start,
                "finished_at": start + timedelta(seconds=1),
                "outcome": "DONE",
            }
        ]


def rendered(checks: FakeChecks) -> str:
    out = io.StringIO()
    render.render_checks(Console(file=out, width=200, color_system=None), checks)  # type: ignore[arg-type]
    return out.getvalue()


def test_render_checks_shows_tables_summary_and_verdict() -> None:
    text = rendered(
        FakeChecks(
            "DONE",
            [
                result("inst/shop", "WARNING", "Index without CONCURRENTLY", line=4, content="locks writes [x]"),
                result("inst/shop", "ERROR", "DELETE without WHERE", line=1, column=1, content="deletes every row"),
                summary("inst/shop", "2 statements (DELETE 1, CREATE_INDEX 1); ~5,000 rows affected"),
            ],
        )
    )
    assert "inst/shop" in text
    assert text.index("DELETE without WHERE") < text.index("Index without CONCURRENTLY")
    assert "1:1" in text and "4:1" in text
    assert "locks writes [x]" in text  # markup in messages is printed literally
    assert "summary 2 statements (DELETE 1, CREATE_INDEX 1); ~5,000 rows affected" in text
    assert "w1@host:42" in text and "1.0s" in text
    assert "plan 7: DONE — 1/1 targets checked, 1 error(s), 1 warning(s)" in text


def test_render_checks_shows_the_failure_reason() -> None:
    text = rendered(FakeChecks("FAILED", [], reason="abandoned after 3 attempts"))
    assert "FAILED" in text and "reason: abandoned after 3 attempts" in text


def test_a_claimed_run_without_an_open_attempt_is_waiting_for_a_worker() -> None:
    claimed = FakeChecks("RUNNING", [])
    claimed.attempts = []
    assert "plan 7: RUNNING (claimed, waiting for a worker) — 0/? targets" in rendered(claimed)
    executing = FakeChecks("RUNNING", [])
    executing.attempts[0]["outcome"] = None
    assert "plan 7: RUNNING — 0/? targets" in rendered(executing)


def test_wait_progress_prints_plain_lines_only_on_change() -> None:
    out = io.StringIO()
    progress = render.WaitProgress(Console(file=out, width=200), plan_id=7)
    with progress:
        for status, done in [("AVAILABLE", 0), ("AVAILABLE", 0), ("RUNNING", 0), ("RUNNING", 1), ("DONE", 2)]:
            checks = FakeChecks(status, [])
            checks.targets_done, checks.targets_total = done, 2
            progress.update(checks)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "plan 7: AVAILABLE 0/2 targets",
        "plan 7: RUNNING 0/2 targets",
        "plan 7: RUNNING 1/2 targets",
        "plan 7: DONE 2/2 targets",
    ]
    assert all("elapsed" in line for line in lines)


def test_first_sentence_keeps_compact_reports_short() -> None:
    long = 'DELETE on "order_items" has no WHERE clause: it removes every row. Add a WHERE clause.'
    assert render.first_sentence(long) == 'DELETE on "order_items" has no WHERE clause …'
    assert render.first_sentence("Short: but kept whole") == "Short: but kept whole"
    assert render.first_sentence("No separator at all here, just words") == "No separator at all here, just words"


def test_cli_errors_are_one_line() -> None:
    from plancheck.cli.main import one_line

    caret = "group 'g': syntax error in group expression:\nresource.database_name ==(\n                         ^\n"
    assert one_line(caret) == "group 'g': syntax error in group expression: resource.database_name ==( (column 26)"
    assert one_line("plan 3 not found") == "plan 3 not found"


# -- terminal escape injection -----------------------------------------------------------------------
EVIL = "x\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\u202eevil\x00"
CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]]


def no_controls(text: str) -> bool:
    return not [ch for ch in text if ch in CONTROLS and ch != "\n"]


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=400, color_system=None, highlight=False), out


def test_plain_shows_control_characters_as_escapes() -> None:
    assert render.plain(EVIL) == "x\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\u202eevil\\x00"
    assert render.plain("two\nlines\ttab") == "two\\nlines\\ttab"
    assert render.plain("two\nlines", newlines=True) == "two\nlines"
    assert render.safe("[bold]x\x1b") == "\\[bold]x\\x1b"
    assert render.plain("日本語 ü – fine") == "日本語 ü – fine"


def test_every_field_of_a_checks_report_is_escaped() -> None:
    checks = FakeChecks(
        "FAILED",
        [
            result(f"inst/{EVIL}", f"ERR{EVIL}", f"title {EVIL}", line=1, content=f"message {EVIL}\nsecond line"),
            summary(f"inst/{EVIL}", f"summary {EVIL}"),
            summary(
                "inst/other",
                report={
                    "statement_types": {f"K{EVIL}": 1},
                    "affected_rows": 1,
                    "changed_resources": [{"schema": EVIL, "table": EVIL}],
                },
            ),
        ],
        reason=f"reason {EVIL}",
    )
    checks.attempts[0].update(worker=f"w{EVIL}", outcome=f"DONE{EVIL}")
    console, out = plain_console()
    render.render_checks(console, checks)  # type: ignore[arg-type]
    text = out.getvalue()
    assert no_controls(text), [ch for ch in text if ch in CONTROLS and ch != "\n"]
    for shown in (
        "inst/x\\x1b[2J",
        "title x\\x1b",
        "message x\\x1b",
        "summary x\\x1b",
        "reason x\\x1b",
        "wx\\x1b",
        "DONEx\\x1b",
        "Kx\\x1b",
    ):
        assert shown in text, shown
    assert "second line" in text  # an intended line break in a message survives


def test_catalog_tables_escape_names_labels_and_values() -> None:
    console, out = plain_console()
    console.print(
        render.databases_table(
            [{"target": f"i/{EVIL}", "environment": EVIL, "labels": {EVIL: EVIL}}], title="Databases"
        )
    )
    console.print(render.key_value_table({EVIL: EVIL, "plain": None}, title="Issue 1"))
    console.print(render.tasks_table([{"target": f"i/{EVIL}", "status": EVIL}], "Rollout"))
    text = out.getvalue()
    assert no_controls(text) and text.count("x\\x1b[2J") == 8  # 4 in the databases table, 2 in each other


def test_json_stays_exact_json_and_escapes_c1_on_a_terminal() -> None:
    data = {"target": EVIL, "results": [{"content": EVIL}]}
    out = io.StringIO()
    render.print_json(Console(file=out, width=400), data)  # not a terminal: the document as is
    assert json.loads(out.getvalue()) == data and no_controls(out.getvalue())
    terminal = io.StringIO()
    render.print_json(Console(file=terminal, width=400, force_terminal=True), data)
    assert "\x9b" not in terminal.getvalue() and "\\u009b" in terminal.getvalue()
    assert "\x07" not in terminal.getvalue() and "\\u001b" in terminal.getvalue()


def test_cli_errors_with_control_characters_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from plancheck.cli.main import run

    assert run(["project", "create", f"k{EVIL}"]) == 3  # the key in the message, as repr() shows it
    assert run(["group", "create", "shop", "g", "--expr", f'resource.database_name == "{EVIL}" &&']) == 3
    assert run(["plan", "checks", f"1{EVIL}"]) == 3  # a usage error
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert no_controls("".join(errors)) and all("x\\x1b[2J" in line for line in errors[:2]), errors


def test_chunk_executions_and_their_retries_are_listed_apart_from_the_run() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)

    def attempt(chunk: int | None, number: int, outcome: str | None, worker: str) -> dict[str, Any]:
        return {
            "generation": 1,
            "attempt": number,
            "chunk": chunk,
            "worker": worker,
            "claimed_at": start,
            "started_at": start,
            "finished_at": start + timedelta(seconds=2),
            "outcome": outcome,
        }

    checks = FakeChecks("DONE", [summary("inst/a", "1 statement")])
    checks.attempts = [
        attempt(None, 1, "DONE", "w1@h:1"),
        attempt(0, 1, "LOST", "w2@h:2"),
        attempt(0, 2, "DONE", "w1@h:1"),
        attempt(1, 1, "DONE", "w1@h:1"),
    ]
    rows = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in rendered(checks).splitlines()
        if "w1@h" in line or "w2@h" in line
    ]
    assert [(row[1], row[2], row[-1]) for row in rows] == [
        ("run", "1", "DONE"),
        ("chunk 0", "1", "LOST"),
        ("chunk 0", "2", "DONE"),
        ("chunk 1", "1", "DONE"),
    ]
