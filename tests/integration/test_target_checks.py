"""check_target, the read-only session and the summary report against real PostgreSQL databases."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from plancheck.checks import estimate
from plancheck.checks.advise import ReviewConfig
from plancheck.checks.check import CheckStopped, check_target
from plancheck.checks.limits import CheckLimits
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.checks.session import TargetSession, libpq_url, open_target_session
from plancheck.checks.summary import summarize
from plancheck.checks.target import Target, TargetError
from plancheck.devtools.embedded import free_port
from plancheck.domain.risk import assess

NEEDLE = f"S3cr3t-Needle-{uuid.uuid4().hex[:8]}"
CONFIG = ReviewConfig(levels={}, options={})

RISKY_SQL = """\
DELETE FROM orders;
UPDATE customers SET name = 'x' WHERE id <= 50;
ALTER TABLE orders ADD COLUMN note text;
CREATE INDEX idx_orders_customer ON orders (customer_id);
DROP TABLE audit_log;
TRUNCATE customers;
"""


def _target(url: str, instance: str = "pg") -> Target:
    return Target(instance, make_url(url).database or "", "test", url)


def _populate(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 500) g")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, amount numeric)")
        conn.execute("INSERT INTO orders SELECT g, g % 500 + 1, g FROM generate_series(1, 10000) g")
        conn.execute("CREATE TABLE audit_log (id int, event text)")
        conn.execute("INSERT INTO audit_log SELECT g, 'e' FROM generate_series(1, 2000) g")
        conn.execute("ANALYZE")


def _snapshot(url: str) -> dict[str, int]:
    """Every user table with its exact row count."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        ]
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


@pytest.fixture(scope="module")
def shop(create_database: Callable[[str], str]) -> str:
    url = create_database("shop")
    _populate(url)
    return url


@pytest.fixture
def hold_lock(shop: str) -> Iterator[Callable[[str], None]]:
    """Lock tables ACCESS EXCLUSIVE from another session until the test ends."""
    conn = psycopg.connect(libpq_url(shop))

    def lock(table: str) -> None:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    yield lock
    conn.rollback()
    conn.close()


def _summary(results: list[CheckResult]) -> CheckResult:
    [summary] = [r for r in results if r.type == CheckType.STATEMENT_SUMMARY_REPORT]
    return summary


# --- the read-only session ---------------------------------------------------------------------------


def test_explain_estimates_dml_inside_a_read_only_transaction(shop: str) -> None:
    with open_target_session(_target(shop)) as session:
        assert 9_000 <= session.estimate_rows("DELETE FROM orders") <= 11_000
        assert 30 <= session.estimate_rows("UPDATE customers SET name = 'x' WHERE id <= 50") <= 80
        assert session.estimate_rows("INSERT INTO customers VALUES (1001, 'a'), (1002, 'b'), (1003, 'c')") == 3
        assert (
            4_000 <= session.estimate_rows("INSERT INTO audit_log SELECT id, 'x' FROM orders WHERE id > 5000") <= 6_000
        )
        assert session.estimate_rows("DELETE FROM no_such_table") is None  # e.g. created earlier in the sheet
        assert session.estimate_rows("SELECT count(*) FROM orders") == 1  # the transaction survived the failure
        assert session.table_row_estimate("public", "orders") == 10_000
        assert session.table_row_estimate("public", "no_such_table") is None


def test_session_never_runs_anything_but_explain(shop: str) -> None:
    before = _snapshot(shop)
    with open_target_session(_target(shop)) as session:
        for sneaky in (
            "SELECT 1; DROP TABLE orders",
            "DELETE FROM orders; COMMIT",
            "COMMIT; DROP TABLE customers",
            "DROP TABLE orders",
            "TRUNCATE orders",
            "SELECT * INTO stolen FROM orders",
        ):
            assert session.estimate_rows(sneaky) is None
        assert session._explain("SELECT 1; DROP TABLE orders") is None  # the server refuses a second statement
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session._conn.execute("CREATE TABLE pwned (id int)")
    assert _snapshot(shop) == before


def test_statement_timeout_and_cancel_become_target_errors(shop: str, hold_lock: Callable[[str], None]) -> None:
    hold_lock("orders")
    with open_target_session(_target(shop), CheckLimits(statement_timeout_ms=300, lock_timeout_ms=0)) as session:
        started = time.monotonic()
        with pytest.raises(TargetError) as raised:
            session.estimate_rows("DELETE FROM orders")
        assert raised.value.title == "Statement timeout on target"
        assert time.monotonic() - started < 5
    with open_target_session(_target(shop), CheckLimits(statement_timeout_ms=60_000, lock_timeout_ms=0)) as session:
        threading.Timer(0.3, session.cancel).start()
        started = time.monotonic()
        with pytest.raises(TargetError) as raised:
            session.estimate_rows("DELETE FROM orders")
        assert raised.value.title == "Check canceled"
        assert time.monotonic() - started < 5
        with pytest.raises(TargetError):  # the session stays failed
            session.table_row_estimate("public", "orders")


def _backend_pid(session: TargetSession) -> int:
    return session._conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_session_settings_arrive_as_connection_options(shop: str) -> None:
    separator = "&" if "?" in shop else "?"  # the embedded server's URL already has ?host=<socket dir>
    url = f"{shop}{separator}options=-c%20search_path%3Dpg_catalog%2Cpublic"  # the target's own options are kept
    with open_target_session(_target(url), CheckLimits(statement_timeout_ms=4321, lock_timeout_ms=1234)) as session:
        shown = {
            name: session._conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "statement_timeout",
                "lock_timeout",
                "default_transaction_read_only",
                "transaction_read_only",
                "search_path",
                "application_name",
            )
        }
    assert shown == {
        "statement_timeout": "4321ms",
        "lock_timeout": "1234ms",
        "default_transaction_read_only": "on",
        "transaction_read_only": "on",
        "search_path": "pg_catalog,public",
        "application_name": "plancheck",
    }


def test_a_clean_session_leaves_its_connection_for_the_next_check(shop: str, hold_lock: Callable[[str], None]) -> None:
    with open_target_session(_target(shop)) as session:
        first = _backend_pid(session)
        session._conn.execute("SET LOCAL work_mem = '7MB'")  # transaction state never outlives a session
    with open_target_session(_target(shop)) as session:
        assert _backend_pid(session) == first
        assert session._conn.execute("SHOW work_mem").fetchone()[0] != "7MB"
        assert session.estimate_rows("DELETE FROM orders") is not None
    hold_lock("orders")
    with open_target_session(_target(shop), CheckLimits(lock_timeout_ms=100)) as session:
        assert _backend_pid(session) != first  # other settings, another connection
        first = _backend_pid(session)
    with open_target_session(_target(shop), CheckLimits(lock_timeout_ms=100)) as session:
        assert _backend_pid(session) == first
        with pytest.raises(TargetError):
            session.estimate_rows("DELETE FROM orders")
    # a failed session's connection was closed
    with open_target_session(_target(shop), CheckLimits(lock_timeout_ms=100)) as session:
        assert _backend_pid(session) != first


def test_planning_side_effects_never_reach_the_next_check(shop: str) -> None:
    """A STABLE function the planner evaluates (for a selectivity estimate) may switch the session's
    timeouts off with set_config(…, false) and take a session-level advisory lock. The EXPLAIN is rolled
    back, even the first one on a fresh connection, and DISCARD ALL clears the rest before the
    connection waits for the next check."""
    function = f"pc_untimed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(shop), autocommit=True) as admin:
        admin.execute(f"""
            CREATE FUNCTION {function}() RETURNS int LANGUAGE plpgsql STABLE AS $$
            BEGIN
                PERFORM set_config('statement_timeout', '0', false);
                PERFORM set_config('lock_timeout', '0', false);
                PERFORM pg_advisory_lock(4242);
                RETURN 100;
            END $$""")
    timeouts = "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
    target = _target(shop)
    with open_target_session(target, CheckLimits(statement_timeout_ms=4321, lock_timeout_ms=1234)) as session:
        first = _backend_pid(session)
        assert session.estimate_rows(f"SELECT id FROM orders WHERE id < {function}()") is not None
        assert session.estimate_rows(f"UPDATE orders SET amount = 0 WHERE id < {function}()") is not None
        assert session._conn.execute(timeouts).fetchone() == ("4321ms", "1234ms")
    with psycopg.connect(libpq_url(shop), autocommit=True) as admin:
        advisory = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s"
        assert admin.execute(advisory, (first,)).fetchone() == (0,)
    with open_target_session(target, CheckLimits(statement_timeout_ms=4321, lock_timeout_ms=1234)) as session:
        assert _backend_pid(session) == first  # the same pooled connection, its safety settings intact
        assert session._conn.execute(timeouts).fetchone() == ("4321ms", "1234ms")


def test_a_dead_idle_connection_is_replaced_not_reported(shop: str) -> None:
    with open_target_session(_target(shop)) as session:
        first = _backend_pid(session)
    with psycopg.connect(libpq_url(shop), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    results = check_target(_target(shop), "DELETE FROM orders WHERE id = 1;", CONFIG)
    assert [r.status for r in results if r.status == Status.ERROR] == []
    with open_target_session(_target(shop)) as session:
        assert _backend_pid(session) != first


# --- the summary report ------------------------------------------------------------------------------


def test_summary_of_a_risky_migration(shop: str) -> None:
    with open_target_session(_target(shop)) as session:
        result = summarize(RISKY_SQL, "pg/shop", session)
    assert (result.status, result.type, result.target) == (
        Status.SUCCESS,
        CheckType.STATEMENT_SUMMARY_REPORT,
        "pg/shop",
    )
    report = result.report
    assert report["statement_types"] == {
        "ALTER_TABLE": 1,
        "CREATE_INDEX": 1,
        "DELETE": 1,
        "DROP_TABLE": 1,
        "TRUNCATE": 1,
        "UPDATE": 1,
    }
    assert report["changed_resources"] == [
        {"schema": "public", "table": "audit_log", "row_estimate": 2_000},
        {"schema": "public", "table": "customers", "row_estimate": 500},
        {"schema": "public", "table": "orders", "row_estimate": 10_000},
    ]
    assert (report["dml_total"], report["dml_sampled"], report["dml_estimated"]) == (2, 2, 2)
    # DELETE ≈ 10,000 + UPDATE ≈ 50 + orders (ALTER, CREATE INDEX) 10,000 + audit_log 2,000 + customers 500
    assert 21_500 <= report["affected_rows"] <= 23_500
    assert result.content.startswith("6 statements (ALTER_TABLE 1, CREATE_INDEX 1, DELETE 1, DROP_TABLE 1,")
    assert "public.orders (10,000 rows)" in result.content


def test_summary_samples_dml_and_scales(shop: str) -> None:
    sql = "".join(f"DELETE FROM orders WHERE id = {i};\n" for i in range(1, 101))
    sql += (
        "INSERT INTO customers VALUES (9001, 'a'), (9002, 'b');\n"
        "CREATE TABLE fresh (id int);\nINSERT INTO fresh VALUES (1);"
    )
    with open_target_session(_target(shop)) as session:
        report = summarize(sql, "pg/shop", session).report
    assert (report["dml_total"], report["dml_sampled"], report["dml_estimated"]) == (100, 10, 10)
    assert report["affected_rows"] == 100 + 2 + 1  # one row per DELETE by primary key, plus the VALUES rows
    assert {"schema": "public", "table": "fresh", "row_estimate": None} in report["changed_resources"]


def test_summary_of_unparsable_sql_is_a_warning() -> None:
    result = summarize("DELETE FORM orders;", "pg/shop", None)
    assert result.status == Status.WARNING
    assert "syntax error" in result.content and result.report is None


# --- row estimates of every DML form -----------------------------------------------------------------


@pytest.fixture(scope="module")
def big(create_database: Callable[[str], str]) -> str:
    """`big` (50,000 rows, k = id % 100), `small` (100 rows, k = id) and an empty `archive`."""
    url = create_database("big")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, v text, k int)")
        conn.execute("INSERT INTO big SELECT g, 'x', g % 100 FROM generate_series(1, 50000) g")
        conn.execute("CREATE TABLE small (id int PRIMARY KEY, k int)")
        conn.execute("INSERT INTO small SELECT g, g FROM generate_series(1, 100) g")
        conn.execute("CREATE TABLE archive (id int, v text)")
        conn.execute("ANALYZE")
    return url


SUBQUERY, CTE = estimate.DEPENDS_ON_SUBQUERY, estimate.MODIFYING_CTE
DML_FORMS = [
    # (statement, rows it really changes, planner doubts)
    ("UPDATE big SET v = (SELECT 'y') WHERE id > 0", 50_000, ()),  # the InitPlan computes v, not the rows
    ("DELETE FROM big WHERE id > 0 RETURNING (SELECT 1)", 50_000, ()),
    ("WITH d AS (DELETE FROM big RETURNING 1) SELECT count(*) FROM d", 50_000, (CTE,)),
    ("WITH d AS (DELETE FROM big WHERE k = 1 RETURNING *) INSERT INTO archive SELECT id, v FROM d", 1_000, (CTE,)),
    ("INSERT INTO archive SELECT id, v FROM big", 50_000, ()),
    ("UPDATE big SET v = 'z' FROM small WHERE big.k = small.k", 49_500, ()),
    ("DELETE FROM big USING small WHERE big.k = small.id AND small.k < 10", 4_500, ()),
    ("DELETE FROM big WHERE true", 50_000, ()),
    ("UPDATE big SET v = 'w' WHERE 1 = 1 OR v IS NULL", 50_000, ()),
    ("MERGE INTO big USING small ON big.id = small.id WHEN MATCHED THEN UPDATE SET v = 'm'", 100, ()),
    ("UPDATE big SET v = 'a' WHERE k = (SELECT max(k) FROM small)", 0, (SUBQUERY,)),  # k tops out at 99
    ("DELETE FROM big b WHERE b.k > (SELECT avg(s.k) FROM small s WHERE s.id = b.id)", 0, (SUBQUERY,)),
]


@pytest.mark.parametrize(("sql", "changed", "doubts"), DML_FORMS, ids=[sql[:40] for sql, _, _ in DML_FORMS])
def test_every_dml_form_is_estimated_from_the_rows_it_changes(
    big: str, sql: str, changed: int, doubts: tuple[str, ...]
) -> None:
    with open_target_session(_target(big)) as session:
        found = session.estimate(sql)
    assert found is not None and found.doubts == doubts
    if SUBQUERY not in doubts:  # the planner's figure is close to what the statement would really change
        assert 0.8 * changed <= found.rows <= 1.2 * changed, found
    assert _snapshot(big) == {"archive": 0, "big": 50_000, "small": 100}


def _risk(result: CheckResult, threshold: int = 10_000) -> str:
    return assess([result.to_json()], {result.target: "test"}, threshold).risk


def test_summary_and_risk_never_understate_a_change(big: str) -> None:
    with open_target_session(_target(big)) as session:
        initplan = summarize("UPDATE big SET v = (SELECT 'y') WHERE id > 0;", "pg/big", session)
        in_cte = summarize("WITH d AS (DELETE FROM big RETURNING 1) SELECT count(*) FROM d;", "pg/big", session)
        subquery = summarize("UPDATE big SET v = 'a' WHERE k = (SELECT max(k) FROM small);", "pg/big", session)
        unplanned = summarize("CREATE TABLE fresh (id int);\nUPDATE fresh SET id = 2 WHERE id = 1;", "pg/big", session)
        small = summarize("DELETE FROM big WHERE id = 5;", "pg/big", session)

    assert initplan.report["affected_rows"] >= 40_000 and initplan.report["estimate_reliable"] is True
    assert _risk(initplan) == "HIGH"

    assert in_cte.report["statement_types"] == {"DELETE": 1}
    assert in_cte.report["changed_resources"] == [{"schema": "public", "table": "big", "row_estimate": 50_000}]
    assert in_cte.report["affected_rows"] >= 40_000 and in_cte.report["estimate_reliable"] is False
    assert in_cte.content.startswith("1 statement (DELETE 1); ~")
    assert "row estimate uncertain (DELETE: it changes rows in a WITH clause" in in_cte.content
    assert (_risk(in_cte), _risk(in_cte, threshold=1_000_000)) == ("HIGH", "MEDIUM")

    for guess in (subquery, unplanned):
        assert guess.report["estimate_reliable"] is False and guess.report["estimate_doubts"]
        assert "row estimate uncertain" in guess.content
        assert _risk(guess) == "MEDIUM"
    assert "could not be estimated" in unplanned.content

    assert small.report["estimate_reliable"] is True and small.report["affected_rows"] == 1
    assert "uncertain" not in small.content and _risk(small) == "LOW"


def test_the_row_limit_rule_sees_past_initplans_and_into_with_clauses(big: str) -> None:
    sql = (
        "UPDATE big SET v = (SELECT 'y') WHERE id > 0;\n"
        "WITH d AS (DELETE FROM big RETURNING 1) SELECT count(*) FROM d;\n"
        "MERGE INTO big USING small ON big.id = small.id WHEN MATCHED THEN DELETE;\n"
    )
    flagged = {
        line: r.content
        for (rule, line), r in _advice(check_target(_target(big), sql, CONFIG)).items()
        if rule == "statement.affected-row-limit"
    }
    assert set(flagged) == {1, 2}  # the MERGE changes ~100 rows
    assert flagged[2].startswith('DELETE on "big" is estimated to affect about')


# --- check_target ------------------------------------------------------------------------------------


def _advice(results: list[CheckResult]) -> dict[tuple[str, int], CheckResult]:
    """SQL review findings by (rule, line)."""
    return {(r.title, r.position.line): r for r in results if r.type == CheckType.STATEMENT_ADVISE and r.position}


def test_check_target_reviews_and_summarizes(shop: str) -> None:
    results = check_target(_target(shop), RISKY_SQL, CONFIG)
    advice = _advice(results)
    assert advice[("statement.where-require-update-delete", 1)].status == Status.ERROR
    assert advice[("statement.disallow-truncate", 6)].status == Status.ERROR
    assert advice[("index.create-concurrently", 4)].status == Status.WARNING
    # The row limit (1,000 by default) is judged with EXPLAIN on the target: DELETE ≈ 10,000 rows, UPDATE ≈ 50.
    row_limit = advice[("statement.affected-row-limit", 1)]
    assert row_limit.status == Status.WARNING
    assert 9_000 <= int(re.search(r"about ([\d,]+) rows", row_limit.content)[1].replace(",", "")) <= 11_000
    assert ("statement.affected-row-limit", 2) not in advice
    summary = _summary(results)
    assert summary.status == Status.SUCCESS
    assert 21_500 <= summary.report["affected_rows"] <= 23_500
    assert {r.target for r in results} == {f"pg/{make_url(shop).database}"}


def test_project_rule_levels_and_options_apply(shop: str) -> None:
    config = ReviewConfig(
        levels={"statement.disallow-truncate": "WARNING", "statement.where-require-update-delete": "DISABLED"},
        options={"statement.affected-row-limit": {"max_rows": 20}},
    )
    advice = _advice(check_target(_target(shop), RISKY_SQL, config))
    assert advice[("statement.disallow-truncate", 6)].status == Status.WARNING
    assert not any(rule == "statement.where-require-update-delete" for rule, _ in advice)
    assert {line for rule, line in advice if rule == "statement.affected-row-limit"} == {1, 2}


def test_checks_never_change_the_target(shop: str) -> None:
    destructive = (
        RISKY_SQL
        + """\
DELETE FROM customers WHERE id > 10;
UPDATE orders SET amount = 0;
INSERT INTO orders SELECT id + 100000, customer_id, amount FROM orders;
DROP TABLE orders CASCADE;
DROP SCHEMA public CASCADE;
TRUNCATE orders, customers, audit_log;
CREATE TABLE pwned AS SELECT * FROM orders;
"""
    )
    before = _snapshot(shop)
    results = check_target(_target(shop), destructive, CONFIG)
    assert _summary(results).status == Status.SUCCESS
    assert _snapshot(shop) == before == {"audit_log": 2_000, "customers": 500, "orders": 10_000}


def test_lock_timeout_is_an_error_for_that_target(shop: str, hold_lock: Callable[[str], None]) -> None:
    hold_lock("orders")
    started = time.monotonic()
    results = check_target(_target(shop), "UPDATE orders SET amount = 1 WHERE id < 10;", CONFIG)
    assert time.monotonic() - started < 10
    assert [(r.status, r.title) for r in results] == [(Status.ERROR, "Lock timeout on target")]
    assert "locked" in results[0].content


def test_unreachable_target_among_several(shop: str, create_database: Callable[[str], str]) -> None:
    other = create_database("other")
    _populate(other)
    dead = make_url(shop).set(host="127.0.0.1", port=free_port(), query={}).render_as_string(hide_password=False)
    targets = [_target(shop, "a"), _target(dead, "b"), _target(other, "c")]
    results = {t.instance_key: check_target(t, RISKY_SQL, CONFIG) for t in targets}
    assert [(r.status, r.title) for r in results["b"]] == [(Status.ERROR, "Target unreachable")]
    for instance in ("a", "c"):
        assert all(r.status != Status.ERROR for r in results[instance] if r.type == CheckType.STATEMENT_SUMMARY_REPORT)
        assert _summary(results[instance]).report["affected_rows"] > 20_000


def test_stop_request_cancels_a_running_explain(shop: str, hold_lock: Callable[[str], None]) -> None:
    hold_lock("orders")
    stop = threading.Event()
    sessions: list[TargetSession | None] = []

    def on_session(session: TargetSession | None) -> None:
        sessions.append(session)
        if session is not None:
            threading.Timer(0.2, lambda: (stop.set(), session.cancel())).start()

    with pytest.raises(CheckStopped):
        check_target(_target(shop), "DELETE FROM orders;", CONFIG, should_stop=stop.is_set, on_session=on_session)
    assert len(sessions) == 2 and sessions[1] is None


# --- credentials -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def needle_server(password_server: str) -> str:
    """The password server with roles `needle` (LOGIN) and `needle_off` (NOLOGIN), password NEEDLE, and
    a database `app`; returns the socket directory."""
    with psycopg.connect(host=password_server, user="postgres", dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE ROLE needle LOGIN PASSWORD '{NEEDLE}'")
        admin.execute(f"CREATE ROLE needle_off NOLOGIN PASSWORD '{NEEDLE}'")
        admin.execute("CREATE DATABASE app OWNER needle")
    return password_server


def test_credentials_never_leak(needle_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    socket = f"?host={needle_server}"
    good = f"postgresql+psycopg://needle:{NEEDLE}@/app{socket}"
    cases = {
        "ok": good,
        "wrong password": f"postgresql+psycopg://needle:{NEEDLE}-wrong@/app{socket}",
        "login not allowed": f"postgresql://needle_off:{NEEDLE}@/app{socket}",
        "no such database": f"postgresql://needle:{NEEDLE}@/nope{socket}",
        "unreachable port": f"postgresql://needle:{NEEDLE}@127.0.0.1:{free_port()}/app",
        "bad port": f"postgresql://needle:{NEEDLE}@127.0.0.1:notaport/app",
    }
    results = {
        case: check_target(Target("secure", "app", "prod", url), RISKY_SQL, CONFIG) for case, url in cases.items()
    }

    assert _summary(results["ok"]).status == Status.SUCCESS
    for case in cases.keys() - {"ok"}:
        [error] = results[case]
        assert (error.status, error.title) == (Status.ERROR, "Target unreachable"), case
    assert "password authentication failed" in results["wrong password"][0].content
    assert "not permitted to log in" in results["login not allowed"][0].content
    everything = repr(results) + caplog.text + "".join(str(r.to_json()) for rs in results.values() for r in rs)
    assert NEEDLE not in everything
    assert "S3cr3t" not in everything
    assert NEEDLE not in repr(Target("secure", "app", "prod", good))
