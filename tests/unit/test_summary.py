"""The summary report from the review's parse: the same report as from its own, and one parse per check."""

from __future__ import annotations

from typing import Any, cast

import pglast
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.checks.advise import ReviewConfig, Unreviewable, parse, review
from plancheck.checks.check import _run_checks
from plancheck.checks.estimate import Estimate
from plancheck.checks.limits import DEFAULT_LIMITS
from plancheck.checks.result import CheckResult, Status
from plancheck.checks.rules import ALL_RULES, script
from plancheck.checks.rules.script import SqlSyntaxError, parse_script
from plancheck.checks.summary import parse_statements, script_statements, summarize
from plancheck.checks.target import Target

SHEETS = [
    "CREATE TABLE t (id bigint PRIMARY KEY);\nINSERT INTO t VALUES (1), (2);\nINSERT INTO t DEFAULT VALUES;",
    (
        "-- archive\nDELETE FROM s.orders WHERE id < 10;\n/* fix */ UPDATE orders SET a = 1;  MERGE INTO t USING u"
        " ON t.id = u.id WHEN MATCHED THEN DELETE;"
    ),
    (
        "ALTER TABLE orders RENAME COLUMN a TO b; ALTER TABLE orders RENAME TO orders2; "
        "DROP TABLE a, s.b; TRUNCATE c, s.d;"
    ),
    (
        "CREATE INDEX CONCURRENTLY i ON orders (a); DROP INDEX i; CREATE TABLE x AS SELECT 1; CREATE MATERIALIZED VIEW"
        " v AS SELECT 1; SELECT 1 INTO y; BEGIN; SET lock_timeout = '1s'; COMMIT; VACUUM orders; ANALYZE orders"
    ),
    "INSERT INTO t (a) VALUES ('日本語; -- not a comment');\n/* 日本 */ INSERT INTO \"Größe\" (a) SELECT $$ü$$;",
    "SELECT $x$ $日$; DROP TABLE t; SELECT $本$ $x$;",  # one SELECT of a string
    "",
    "  -- only a comment\n",
    *(sql for rule in ALL_RULES for sql in (*rule.bad, *rule.good)),
]


@pytest.mark.parametrize("sql", SHEETS)
def test_statements_from_the_review_parse_are_those_of_a_parse_of_their_own(sql: str) -> None:
    parsed = parse_script(sql)
    assert script_statements(parsed) == parse_statements(sql)
    assert [statement.text for statement in script_statements(parsed)] == [stmt.sql for stmt in parsed.statements]
    assert summarize(sql, "t", None, parsed) == summarize(sql, "t", None)


def test_statement_text_starts_at_its_first_token() -> None:
    sql = "-- why\n  DELETE FROM t ;\n/* a */ UPDATE t SET a = 1"
    assert [statement.text for statement in script_statements(parse_script(sql))] == [
        "DELETE FROM t",
        "UPDATE t SET a = 1",
    ]


def test_statements_with_masked_names_are_classified_from_a_parse_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(script, "_OFFSET_MAPPING_BUDGET", 0)
    sql = 'SELECT 1;\nCREATE TABLE "Größe" (id bigint PRIMARY KEY);\nDELETE FROM "Größe";'
    parsed = parse_script(sql)
    assert parsed.statements[1].names_masked
    assert [statement.tables for statement in script_statements(parsed)] == [
        (),
        (("public", "Größe"),),
        (("public", "Größe"),),
    ]


def test_summary_of_another_sql_than_the_parse_is_refused() -> None:
    with pytest.raises(ValueError, match="not the parse"):
        summarize("SELECT 2", "t", None, parse_script("SELECT 1"))
    with pytest.raises(ValueError, match="not the parse"):
        review("SELECT 2", "t", ReviewConfig(), parsed=parse_script("SELECT 1"))


def test_summary_of_a_deeply_nested_statement_does_not_overflow_the_stack() -> None:
    sql = "SELECT " + "1 +" * 30_000 + " 1"
    assert summarize(sql, "t", None).content.startswith("1 statement (SELECT 1)")


def test_what_the_review_does_not_parse_is_summarized_as_before() -> None:
    assert isinstance(parse("SELECT 1;\x00"), Unreviewable)
    assert summarize("SELECT 1;\x00", "t", None).status == Status.SUCCESS  # pglast reads up to the NUL
    assert summarize("DELETE FORM t", "t", None).title == "No summary report"


class FakeSession:
    """What _run_checks uses of a TargetSession; every DML estimate is 5,000 rows."""

    def __init__(self) -> None:
        self.estimated: list[str] = []

    def estimate(self, sql: str) -> Estimate | None:
        self.estimated.append(sql)
        return Estimate(5000)

    def estimate_rows(self, sql: str) -> int | None:
        return self.estimate(sql).rows

    def table_row_estimate(self, schema: str, table: str) -> int | None:
        return 100

    def function_volatility(self, schema: str | None, name: str) -> str | None:
        return None

    def raise_if_failed(self) -> None:
        pass


def run_checks(sql: str) -> tuple[list[CheckResult], FakeSession]:
    session = FakeSession()
    target = Target("pg", "db", "test", "postgresql://x")
    return _run_checks(target, sql, ReviewConfig(), DEFAULT_LIMITS, cast(Any, session), lambda: False), session


@pytest.mark.parametrize(
    "sql", [*SHEETS[:6], "SELECT 1;\x00", "DELETE FORM t", "SELECT 1; -- " + "x" * 2 * 1024 * 1024]
)
def test_checks_give_what_review_and_summarize_give_apart(sql: str) -> None:
    results, _ = run_checks(sql)
    session: Any = FakeSession()
    assert results == [*review(sql, "pg/db", ReviewConfig(), session.estimate_rows), summarize(sql, "pg/db", session)]


def test_checks_parse_the_sql_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[str] = []
    parse_sql = pglast.parse_sql

    def counting(sql: str) -> tuple:
        parses.append(sql)
        return parse_sql(sql)

    monkeypatch.setattr(pglast, "parse_sql", counting)
    sql = "-- archive\nDELETE FROM orders WHERE id < 10;\nUPDATE orders SET a = 1 WHERE b = 2;"
    results, session = run_checks(sql)
    assert parses == [sql]
    assert results[-1].report["affected_rows"] == 10_000  # two DML statements of 5,000 rows
    # the summary's estimates ask about the review's statement texts: a session answers them from its memo
    assert session.estimated == ["DELETE FROM orders WHERE id < 10", "UPDATE orders SET a = 1 WHERE b = 2"] * 2


PIECES = ["'", '"', "$$", "$a$", "$x$", "$日$", "/*", "*/", "/* c */", "--", "-- c\n", ";", "é", "日本", "(", "\x0b"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(SHEETS) | st.sampled_from(PIECES) | st.text(max_size=5), max_size=8),
    st.sampled_from([" ", ";\n", ";"]),
)
def test_sql_like_scripts_are_classified_the_same_from_either_parse(pieces: list[str], separator: str) -> None:
    sql = separator.join(pieces)
    try:
        parsed = parse_script(sql)
    except SqlSyntaxError:
        return
    assert script_statements(parsed) == parse_statements(sql)
