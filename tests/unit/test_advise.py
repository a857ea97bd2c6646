"""review() and ReviewConfig: the STATEMENT_ADVISE check as callers see it."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.api import Plancheck
from plancheck.checks import advise
from plancheck.checks.advise import MAX_SCRIPT_BYTES, ReviewConfig, review
from plancheck.checks.result import CheckResult, CheckType, Position, Status
from plancheck.checks.rules import ALL_RULES
from plancheck.core.errors import InvalidInput
from plancheck.core.settings import load_settings

DEFAULT = ReviewConfig()


def titles(results: list[CheckResult]) -> list[str]:
    return [result.title for result in results]


def test_clean_script_gives_one_ok_result() -> None:
    sql = "SET lock_timeout = '3s';\nCREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"
    (result,) = review(sql, "prod/app", DEFAULT)
    assert result == CheckResult(
        Status.SUCCESS, CheckType.STATEMENT_ADVISE, "prod/app", "OK", "2 statements reviewed, no findings"
    )
    assert review("", "t", DEFAULT)[0].content == "0 statements reviewed, no findings"


def test_finding_carries_rule_name_code_level_target_and_position() -> None:
    sql = "SET lock_timeout = '3s';\n\n   DELETE FROM orders;"
    (result,) = review(sql, "prod/app", DEFAULT)
    assert result.status == Status.ERROR
    assert result.type == CheckType.STATEMENT_ADVISE
    assert result.target == "prod/app"
    assert result.title == "statement.where-require-update-delete"
    assert result.code == 202
    assert result.position == Position(3, 16)
    assert result.content.startswith('DELETE on "orders" has no WHERE clause')


def test_errors_come_first_then_by_line() -> None:
    sql = "SELECT * FROM a;\nDELETE FROM b;\nSELECT * FROM c;\nTRUNCATE d;"
    results = review(sql, "t", DEFAULT)
    assert [(r.status, r.position.line) for r in results if r.position] == [
        (Status.ERROR, 2),
        (Status.ERROR, 4),
        (Status.WARNING, 1),
        (Status.WARNING, 3),
        (Status.WARNING, 4),
    ]


def test_at_most_50_errors_and_50_warnings() -> None:
    sql = "SET lock_timeout = '1s';\n" + "DELETE FROM a;\nSELECT * FROM b;\n" * 70
    results = review(sql, "t", DEFAULT)
    errors = [r for r in results if r.status == Status.ERROR]
    warnings = [r for r in results if r.status == Status.WARNING]
    assert len(errors) == len(warnings) == 50
    assert results == errors + warnings
    assert [r.position.line for r in errors] == list(range(2, 102, 2))
    assert errors[-1].content.endswith("(20 more ERROR findings not shown.)")
    assert warnings[-1].content.endswith("(20 more WARNING findings not shown.)")


def test_comments_padding_a_script_past_2_mib_do_not_hide_its_statements() -> None:
    sql = "/* " + "x" * 2_200_000 + " */\nDROP TABLE t CASCADE; DELETE FROM t;\n" + "-- padding\n" * 50_000
    assert len(sql) > MAX_SCRIPT_BYTES
    results = review(sql, "t", DEFAULT)
    assert [(r.status, r.title, r.position) for r in results] == [
        (Status.ERROR, "statement.disallow-cascade", Position(2, 1)),
        (Status.ERROR, "statement.where-require-update-delete", Position(2, 35)),
        (Status.WARNING, "statement.require-lock-timeout", Position(2, 1)),
        (Status.WARNING, "schema.backward-compatibility", Position(2, 1)),
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t;\n" * (MAX_SCRIPT_BYTES // len("DELETEFROMt;") + 1),
        "SELECT 1 -- short comment\n;" * (MAX_SCRIPT_BYTES // len("SELECT1;") + 1),
        "SELECT '" + "é" * (MAX_SCRIPT_BYTES // 2) + "';",
    ],
    ids=["statements", "statements-and-comments", "multi-byte-literal"],
)
def test_more_than_2_mib_of_sql_fails_closed(sql: str) -> None:
    (result,) = review(sql, "t", DEFAULT)
    assert (result.status, result.title, result.code) == (Status.ERROR, "Script too large for review", 200)
    assert "cannot pass" in result.content


def test_just_under_the_limit_is_reviewed() -> None:
    sql = "SELECT 1;" + " " * MAX_SCRIPT_BYTES + "-- " + "é" * 1000
    assert titles(review(sql, "t", DEFAULT)) == ["OK"]


def test_syntax_error_is_one_error_with_line_and_column() -> None:
    sql = "-- ça va\nSELECT 'ünïcode';\nDELETE FROM t;\nSELECT 1 +\n  FROM t WHERE;"
    (result,) = review(sql, "t", DEFAULT)
    assert (result.status, result.title, result.code) == (Status.ERROR, "Syntax error", 201)
    assert result.content == 'syntax error at or near "FROM"'
    assert result.position == Position(5, 3)


def test_level_override_and_disable() -> None:
    sql = "SET lock_timeout = '1s'; DELETE FROM t; SELECT * FROM t;"
    config = ReviewConfig(
        levels={"statement.where-require-update-delete": "WARNING", "statement.select-no-select-all": "ERROR"}
    )
    assert [(r.title, r.status) for r in review(sql, "t", config)] == [
        ("statement.select-no-select-all", Status.ERROR),
        ("statement.where-require-update-delete", Status.WARNING),
    ]
    disabled = ReviewConfig(
        levels={"statement.where-require-update-delete": "DISABLED", "statement.select-no-select-all": "DISABLED"}
    )
    assert titles(review(sql, "t", disabled)) == ["OK"]


def test_naming_pattern_option() -> None:
    sql = "SET lock_timeout = '1s'; CREATE TABLE tbl_orders (id bigint PRIMARY KEY);"
    assert titles(review(sql, "t", DEFAULT)) == ["OK"]
    config = ReviewConfig.from_project_settings({"sql_review": {"rules": {"naming.table": {"pattern": "^t_[a-z_]+$"}}}})
    (result,) = review(sql, "t", config)
    assert result.title == "naming.table"
    assert "/^t_[a-z_]+$/" in result.content and 'e.g. "tbl_orders"' not in result.content


def test_naming_patterns_run_in_linear_time() -> None:
    """A backtracking engine spins for hours on this pattern and a 40-character name that almost matches."""
    config = ReviewConfig(options={"naming.table": {"pattern": "^([a-z0-9]+_?)*$"}})
    sql = f"SET lock_timeout = '1s'; CREATE TABLE {'a' * 39}$ (id bigint PRIMARY KEY);"
    outcome: list[list[str]] = []
    worker = threading.Thread(target=lambda: outcome.append(titles(review(sql, "t", config))), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a hang guard, not a speed measurement: RE2 answers in microseconds
    assert outcome == [["naming.table"]]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("^(a)\\1$", "invalid escape sequence"), ("^(?=idx_)", "invalid perl operator"), ("(?<!_)$", "invalid perl")],
    ids=["backreference", "lookahead", "lookbehind"],
)
def test_patterns_re2_cannot_run_are_rejected_when_the_project_is_created(pattern: str, reason: str) -> None:
    settings = {"sql_review": {"rules": {"naming.index": {"pattern": pattern}}}}
    with pytest.raises(InvalidInput, match=f"naming.index.*not a valid regular expression for RE2 \\({reason}"):
        Plancheck(load_settings({})).create_project("p", settings=settings)


def test_default_naming_accepts_postgresql_generated_names() -> None:
    sql = (
        "SET lock_timeout = '1s';\n"
        "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY orders_ref_key ON orders (ref);\n"
        "CREATE TABLE items (id bigint CONSTRAINT items_pkey PRIMARY KEY, order_id bigint,\n"
        "  qty bigint CONSTRAINT items_qty_check CHECK (qty > 0),\n"
        "  CONSTRAINT items_order_id_fkey FOREIGN KEY (order_id) REFERENCES items (id));"
    )
    assert titles(review(sql, "t", DEFAULT)) == ["OK"]


def test_index_templates_are_stricter_project_settings() -> None:
    sql = "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY orders_status_idx ON orders (status, created_at);"
    config = ReviewConfig(options={"naming.index": {"template": "idx_{table}_{columns}"}})
    (result,) = review(sql, "t", config)
    assert (result.title, result.position) == ("naming.index", Position(2, 1))
    assert 'which makes it "idx_orders_status_created_at"' in result.content
    config = ReviewConfig(options={"naming.index": {"template": "{table}_{columns}_idx"}})
    assert titles(review(sql.replace("orders_status_idx", "orders_status_created_at_idx"), "t", config)) == ["OK"]


def test_constraint_templates_are_stricter_project_settings() -> None:
    sql = (
        "SET lock_timeout = '1s';\n"
        "CREATE TABLE items (id bigint CONSTRAINT items_pkey PRIMARY KEY, order_id bigint,\n"
        "  CONSTRAINT items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id));"
    )
    templates = {"primary_key_template": "pk_{table}", "foreign_key_template": "fk_{table}_{ref_table}"}
    results = review(sql, "t", ReviewConfig(options={"naming.constraint": templates}))
    assert [(r.title, r.position) for r in results] == [
        ("naming.constraint", Position(2, 31)),
        ("naming.constraint", Position(3, 3)),
    ]
    assert ['"pk_items"' in results[0].content, '"fk_items_orders"' in results[1].content] == [True, True]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("idx_{table}_{cols}", "{cols} is not a placeholder"),
        ("idx_{table", "not a valid name template"),
        ("{table!r}", "{table} is not a placeholder"),
    ],
)
def test_bad_templates_are_rejected(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ReviewConfig(options={"naming.index": {"template": template}})


def test_volatility_of_defaults_comes_from_the_target_when_there_is_one() -> None:
    sql = "SET lock_timeout = '1s'; ALTER TABLE orders ADD COLUMN code text DEFAULT app.make_code();"
    assert titles(review(sql, "t", DEFAULT)) == ["OK"]  # unknown without a target
    asked: list[tuple[str | None, str]] = []

    def catalog(schema: str | None, name: str) -> str | None:
        asked.append((schema, name))
        return {"make_code": "v", "now": "s"}.get(name)

    assert titles(review(sql, "t", DEFAULT, function_volatility=catalog)) == ["column.no-volatile-default"]
    assert asked == [("app", "make_code")]
    stable = "SET lock_timeout = '1s'; ALTER TABLE orders ADD COLUMN at timestamptz DEFAULT now();"
    assert titles(review(stable, "t", DEFAULT, function_volatility=catalog)) == ["OK"]
    config = ReviewConfig(options={"column.no-volatile-default": {"volatile_functions": ["make_code"]}})
    assert titles(review(sql, "t", config)) == ["column.no-volatile-default"]


def test_built_in_volatility_table() -> None:
    for default, volatile in [
        ("gen_random_uuid()", True),
        ("clock_timestamp()", True),
        ("nextval('s')", True),
        ("now()", False),
        ("statement_timestamp()", False),
        ("md5('x')", False),
        ("pg_catalog.random()", True),
        ("uuidv7()", True),
    ]:
        sql = f"SET lock_timeout = '1s'; ALTER TABLE orders ADD COLUMN c text DEFAULT {default};"
        assert titles(review(sql, "t", DEFAULT)) == (["column.no-volatile-default"] if volatile else ["OK"]), default


def test_affected_rows_use_the_estimator_per_statement() -> None:
    sql = "UPDATE orders SET a = 1 WHERE b = 2;\nDELETE FROM items WHERE c = 3;\nSELECT 1;"
    asked: list[str] = []

    def estimate(statement: str) -> int | None:
        asked.append(statement)
        return {"UPDATE": 5000, "DELETE": None}[statement.split()[0]]

    (result,) = review(sql, "t", DEFAULT, estimate)
    assert asked == ["UPDATE orders SET a = 1 WHERE b = 2", "DELETE FROM items WHERE c = 3"]
    assert (result.title, result.code, result.position) == ("statement.affected-row-limit", 209, Position(1, 1))
    assert "about 5,000 rows (limit 1,000)" in result.content
    raised = ReviewConfig(options={"statement.affected-row-limit": {"max_rows": 5000}})
    assert titles(review(sql, "t", raised, estimate)) == ["OK"]
    assert titles(review(sql, "t", DEFAULT, None)) == ["OK"]


def test_config_from_project_settings() -> None:
    config = ReviewConfig.from_project_settings(
        {
            "ci_sampling_size": 3,
            "sql_review": {
                "rules": {
                    "statement.affected-row-limit": {"level": "ERROR", "max_rows": 10},
                    "naming.table": {"level": "DISABLED"},
                }
            },
        }
    )
    assert config.levels == {"statement.affected-row-limit": "ERROR", "naming.table": "DISABLED"}
    assert config.options["statement.affected-row-limit"] == {"max_rows": 10}
    assert ReviewConfig.from_project_settings({}) == ReviewConfig()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"statement.where-require": {"level": "ERROR"}}, "did you mean 'statement.where-require-update-delete'"),
        ({"no.such-rule": {}}, "unknown sql_review rule 'no.such-rule'"),
        ({"naming.table": {"level": "error"}}, "bad level 'error'"),
        ({"naming.table": {"level": "FATAL"}}, "expected one of ERROR, WARNING, DISABLED"),
        ({"naming.table": {"patern": "x"}}, "option 'patern' is unknown (known options: pattern)"),
        ({"naming.table": {"pattern": "("}}, "not a valid regular expression"),
        ({"statement.affected-row-limit": {"max_rows": "many"}}, "must be an integer >= 0"),
        ({"statement.affected-row-limit": {"max_rows": -1}}, "must be an integer >= 0"),
        ({"statement.affected-row-limit": {"max_rows": True}}, "must be an integer >= 0"),
        ({"column.no-volatile-default": {"volatile_functions": "random"}}, "must be a list of strings"),
        ({"naming.table": "WARNING"}, "expected an object"),
    ],
)
def test_bad_settings_raise_a_clear_value_error(rules: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReviewConfig.from_project_settings({"sql_review": {"rules": rules}})


def test_bad_settings_shape() -> None:
    with pytest.raises(ValueError, match="sql_review"):
        ReviewConfig.from_project_settings({"sql_review": ["naming.table"]})
    with pytest.raises(ValueError, match="unknown sql_review rule"):
        ReviewConfig(levels={"nope": "ERROR"})


def test_estimator_errors_propagate() -> None:
    def broken(statement: str) -> int | None:
        raise RuntimeError("target unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        review("DELETE FROM t WHERE a = 1", "t", DEFAULT, broken)


def _assert_well_formed(results: list[CheckResult]) -> None:
    assert isinstance(results, list) and results
    for result in results:
        assert result.type == CheckType.STATEMENT_ADVISE and result.target == "t"
        assert result.position is None or (result.position.line >= 1 and result.position.column >= 1)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    _assert_well_formed(review(text, "t", DEFAULT, lambda sql: 10**9))


EXAMPLES = [sql for rule in ALL_RULES for sql in (*rule.bad, *rule.good)]
JUNK = ["\x00", "'", '"', "$$", "$a$", "/*", "*/", "--", ";", "é", "日本", "\n", "(", 'U&"', "E'\\", 'ü"x']


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(EXAMPLES) | st.sampled_from(JUNK) | st.text(max_size=5), max_size=8))
def test_sql_like_scripts_never_raise(pieces: list[str]) -> None:
    _assert_well_formed(review(";\n".join(pieces), "t", DEFAULT, lambda sql: 10**9))


def test_deeply_nested_statement_does_not_overflow_the_stack() -> None:
    # pglast builds trees recursively in C: on a default 8 MB stack this depth is a segfault.
    (result,) = review("SELECT " + "1 +" * 30_000 + " 1", "t", DEFAULT)
    assert result.title == "OK"


def test_lone_surrogate_is_a_syntax_error() -> None:
    (result,) = review("SELECT 1;\nSELECT '\udc80';", "t", DEFAULT)
    assert (result.title, result.position) == ("Syntax error", Position(2, 9))


def test_a_sheet_is_parsed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fan-out plan checks one sheet on many targets: the parse is shared, by the text's SHA-256."""
    advise.PARSES.clear()
    parsed: list[str] = []
    real = advise.parse_script
    monkeypatch.setattr(advise, "parse_script", lambda sql: parsed.append(sql) or real(sql))
    sql = "SET lock_timeout = '1s';\nDELETE FROM orders;"
    first = [review(sql, f"pg/db{i}", DEFAULT, parsed=advise.shared_parse(sql)) for i in range(5)]
    assert parsed == [sql] and advise.shared_parse(sql) is advise.shared_parse(sql)
    assert [result[0].target for result in first] == [f"pg/db{i}" for i in range(5)]
    assert all(result[0].title == "statement.where-require-update-delete" for result in first)
    advise.shared_parse(sql + " ")
    review(sql, "pg/db", DEFAULT)  # without the shared parse: parsed again
    assert parsed == [sql, sql + " ", sql]


def test_the_parse_cache_is_bounded_by_entries_and_text() -> None:
    cache = advise._ParseCache(entries=2, text_bytes=30)
    computed: list[str] = []

    def compute(sql: str, max_bytes: int) -> advise.Script | advise.Unreviewable:
        computed.append(sql)
        return advise.parse(sql, max_bytes)

    limit = advise.MAX_SCRIPT_BYTES
    for sql in ("SELECT 1", "SELECT 2", "SELECT 3", "SELECT 1"):
        cache.get(sql, limit, compute)
    assert computed == ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 1"]  # 2 entries: "SELECT 1" was evicted
    cache.get("SELECT 3", limit, compute)
    assert len(computed) == 4
    cache.get("SELECT 3", limit // 2, compute)  # another limit may judge the same text otherwise
    assert len(computed) == 5
    long = "SELECT 1 -- " + "x" * 40  # larger than the whole cache: never kept
    cache.get(long, limit, compute)
    cache.get(long, limit, compute)
    assert computed[-2:] == [long, long]


def test_threads_share_one_parse_safely() -> None:
    advise.PARSES.clear()
    sql = "CREATE TABLE t (id int PRIMARY KEY);\nALTER TABLE orders ADD COLUMN a int;\n" * 200
    results: list[list[CheckResult]] = []

    def check() -> None:
        results.append(review(sql, "t", DEFAULT, parsed=advise.shared_parse(sql)))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(result == results[0] for result in results)


def test_a_migration_made_of_safe_patterns_is_clean() -> None:
    sql = """\
SET lock_timeout = '3s';
CREATE UNIQUE INDEX CONCURRENTLY orders_ref_key ON orders (ref);
ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref_key;
CREATE TABLE refunds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL,
    amount numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order_id_idx ON refunds (order_id);
ALTER TABLE refunds ADD CONSTRAINT refunds_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    ADD CONSTRAINT refunds_amount_check CHECK (amount > 0);
ALTER TABLE orders ADD COLUMN priority integer NOT NULL DEFAULT 0, ADD COLUMN seen_at timestamptz DEFAULT now(),
    ALTER COLUMN email TYPE varchar(320), ALTER COLUMN note TYPE text;
ALTER TABLE orders ADD CONSTRAINT orders_status_not_null CHECK (status IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_not_null;
ALTER TABLE orders ALTER COLUMN status SET NOT NULL;
"""
    assert [(r.title, r.position) for r in review(sql, "t", DEFAULT)] == [("OK", None)]


def test_each_new_hazard_is_found_on_its_own_line() -> None:
    sql = """\
SET lock_timeout = '3s';
ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE (ref);
ALTER TABLE accounts ADD PRIMARY KEY (id);
ALTER TABLE orders ADD COLUMN seq bigserial;
ALTER TABLE carts ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100) STORED;
VACUUM FULL orders;
CLUSTER orders USING orders_created_at_idx;
REINDEX TABLE orders;
REFRESH MATERIALIZED VIEW order_totals;
ALTER TABLE events DETACH PARTITION events_2020;
LOCK TABLE payments;
ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();
ALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();
CREATE TABLE tags (id integer PRIMARY KEY, name varchar(40));
ALTER TABLE invoices RENAME TO bills;
DROP TABLE legacy_carts;
ALTER TABLE products ALTER COLUMN sku DROP NOT NULL;
BEGIN;
BEGIN;
UPDATE products SET sku = 'x' WHERE id = 1;
"""
    found = sorted({(r.code, r.position.line) for r in review(sql, "t", DEFAULT) if r.position and r.code > 201})
    assert found == sorted(
        [
            (804, 2),
            (804, 3),
            (402, 4),
            (408, 4),
            (402, 5),  # constraints building indexes, rewrites
            (603, 6),
            (604, 7),
            (805, 8),
            (605, 9),
            (606, 10),
            (211, 11),  # whole-table locks
            (402, 12),
            (402, 13),
            (208, 13),  # volatile defaults (and two ALTERs of users that could be one)
            (407, 14),
            (409, 14),
            (901, 15),
            (901, 16),
            (901, 17),  # type choices, schema compatibility
            (213, 18),
            (212, 19),  # a BEGIN never committed, and a BEGIN inside it
        ]
    )
