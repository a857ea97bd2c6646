"""Whole-script understanding: what earlier statements change about later ones, and positions."""

from __future__ import annotations

import pglast
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.corpus import Generator
from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME, lexer, script
from plancheck.checks.rules.base import Rule, RuleContext
from plancheck.checks.rules.script import LineIndex, SqlSyntaxError, first_token, parse_script


def rule_findings(name: str, sql: str) -> list[tuple[int, int]]:
    """(line, column) of each finding of rule name."""
    rule = RULES_BY_NAME[name]
    parsed = parse_script(sql)
    return [parsed.lines(f.index) for f in rule.check(RuleContext(parsed, rule.resolve_options({})))]


def test_index_on_table_created_in_script_needs_no_concurrently() -> None:
    sql = "CREATE TABLE t (id bigint PRIMARY KEY, a int);\nCREATE INDEX idx_t_a ON t (a);"
    assert rule_findings("index.create-concurrently", sql) == []
    assert rule_findings("index.create-concurrently", "CREATE INDEX idx_t_a ON t (a);") == [(1, 1)]


def test_schema_qualified_and_public_names_match() -> None:
    sql = "CREATE TABLE public.t (id bigint PRIMARY KEY);\nCREATE INDEX idx_t ON t (id);"
    assert rule_findings("index.create-concurrently", sql) == []
    sql = "CREATE TABLE s.t (id bigint PRIMARY KEY);\nCREATE INDEX idx_t ON t (id);"
    assert rule_findings("index.create-concurrently", sql) == [(2, 1)]


def test_index_before_the_table_is_created_is_on_an_existing_table() -> None:
    sql = "CREATE INDEX idx_t ON t (id);\nDROP TABLE t;\nCREATE TABLE t (id bigint PRIMARY KEY);"
    assert rule_findings("index.create-concurrently", sql) == [(1, 1)]
    assert rule_findings("schema.backward-compatibility", sql) == [(2, 1)]


def test_foreign_key_on_new_table_needs_no_not_valid() -> None:
    sql = (
        "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint);\n"
        "ALTER TABLE items ADD CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id);"
    )
    assert rule_findings("table.constraint-require-not-valid", sql) == []


def test_if_not_exists_and_or_replace_may_reuse_an_existing_relation() -> None:
    sql = "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY);\nCREATE INDEX idx_o ON orders (id);"
    assert rule_findings("index.create-concurrently", sql) == [(2, 1)]
    sql = "CREATE OR REPLACE VIEW v AS SELECT 1 AS a;\nDROP VIEW v;"
    assert rule_findings("schema.backward-compatibility", sql) == [(2, 1)]


def test_renamed_new_table_is_still_new() -> None:
    sql = "CREATE TABLE t (id bigint PRIMARY KEY);\nALTER TABLE t RENAME TO u;\nCREATE INDEX idx_u ON u (id);"
    assert rule_findings("index.create-concurrently", sql) == []


def test_concurrently_inside_begin_commit() -> None:
    sql = "BEGIN;\nCREATE INDEX CONCURRENTLY idx_o ON orders (status);\nCOMMIT;"
    assert rule_findings("index.concurrently-in-transaction", sql) == [(2, 1)]
    assert rule_findings("statement.disallow-commit", sql) == [(3, 1)]
    chained = "BEGIN; COMMIT AND CHAIN;\nCREATE INDEX CONCURRENTLY idx_o ON orders (status);"
    assert rule_findings("index.concurrently-in-transaction", chained) == [(2, 1)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN a int;", []),
        ("SET lock_timeout = 2000;\nALTER TABLE orders ADD COLUMN a int;", []),
        ("SET lock_timeout = 0;\nALTER TABLE orders ADD COLUMN a int;", [(2, 1)]),
        ("SET lock_timeout = '0ms';\nALTER TABLE orders ADD COLUMN a int;", [(2, 1)]),
        ("SET lock_timeout TO DEFAULT;\nALTER TABLE orders ADD COLUMN a int;", [(2, 1)]),
        ("SET lock_timeout = '2s';\nRESET ALL;\nALTER TABLE orders ADD COLUMN a int;", [(3, 1)]),
        ("SET LOCAL lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN a int;", [(2, 1)]),
        ("BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN a int;\nCOMMIT;", []),
        ("SET lock_timeout = '2s';\nBEGIN;\nCOMMIT;\nALTER TABLE orders ADD COLUMN a int;", []),
        ("SELECT 1;\nALTER TABLE orders ADD COLUMN a int;\nSET lock_timeout = '2s';", [(2, 1)]),
    ],
)
def test_lock_timeout_state(sql: str, expected: list[tuple[int, int]]) -> None:
    assert rule_findings("statement.require-lock-timeout", sql) == expected


def test_lock_timeout_reported_once_per_script() -> None:
    sql = "ALTER TABLE a ADD COLUMN x int;\nCREATE INDEX idx_b ON b (x);\nDROP TABLE c;"
    rule = RULES_BY_NAME["statement.require-lock-timeout"]
    (finding,) = rule.check(RuleContext(parse_script(sql), {}))
    assert '"a"' in finding.message and "2 later statements" in finding.message


def test_set_not_null_after_validated_check_in_same_statement_still_scans() -> None:
    same_statement = RULES_BY_NAME["column.disallow-set-not-null"].bad[2]
    assert rule_findings("column.disallow-set-not-null", same_statement) == [(1, 1)]


def test_merge_alter_table_reports_each_run_once() -> None:
    sql = "ALTER TABLE a ADD COLUMN x int;\nALTER TABLE a ADD COLUMN y int;\nALTER TABLE a ADD COLUMN z int;"
    rule = RULES_BY_NAME["statement.merge-alter-table"]
    (finding,) = rule.check(RuleContext(parse_script(sql), {}))
    assert "3 consecutive" in finding.message and "lines 1 to 3" in finding.message


def test_statement_position_skips_comments_and_whitespace() -> None:
    sql = "SELECT 1;\n\n  -- why\n  /* nested /* comment */ still */\n  DELETE FROM t;"
    assert rule_findings("statement.where-require-update-delete", sql) == [(5, 15)]
    parsed = parse_script(sql)
    assert parsed.lines(parsed.statements[1].start) == (5, 3)
    assert parsed.statements[1].sql == "DELETE FROM t"


def test_first_token_skips_what_pglast_may_include() -> None:
    text = "; \n -- c\n /* a /* b */ c */\tUPDATE"
    assert text[first_token(text, 1) :] == "UPDATE"
    assert first_token("/* unterminated", 0) == len("/* unterminated")


def test_positions_are_characters_after_non_ascii_text() -> None:
    sql = "SELECT 'naïve — ünïcode';\nUPDATE orders SET note = 'déjà vu';  DELETE FROM orders;"
    assert rule_findings("statement.where-require-update-delete", sql) == [(2, 8), (2, 50)]


def test_non_ascii_identifiers_keep_their_exact_names() -> None:
    sql = (
        'CREATE TABLE "Größe" (id bigint PRIMARY KEY);\nCREATE INDEX idx_größe ON "Größe" (id);\nSELECT * FROM "Größe";'
    )
    assert rule_findings("index.create-concurrently", sql) == []
    rule = RULES_BY_NAME["naming.table"]
    (finding,) = rule.check(RuleContext(parse_script(sql), rule.resolve_options({})))
    assert '"Größe"' in finding.message
    assert rule_findings("statement.select-no-select-all", sql) == [(3, 8)]


def test_statements_with_non_ascii_names_are_reparsed_alone_when_the_script_is_costly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sql = 'SELECT 1;\nCREATE TABLE "Größe" (id bigint PRIMARY KEY);\n  DELETE FROM "Größe";'
    largest = max(script._offset_mapping_cost(piece) for piece in sql.split(";"))
    assert largest < script._offset_mapping_cost(sql)
    monkeypatch.setattr(script, "_OFFSET_MAPPING_BUDGET", largest)
    parsed = parse_script(sql)
    assert parsed.statements[1].node.relation.relname == "Größe"
    assert parsed.statements[2].offset == sql.index("DELETE")
    assert rule_findings("statement.where-require-update-delete", sql) == [(3, 15)]
    assert rule_findings("table.require-pk", sql) == []


def test_too_costly_reparse_keeps_masked_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script, "_OFFSET_MAPPING_BUDGET", 0)
    sql = 'SELECT 1;\nCREATE TABLE "Größe" (id bigint PRIMARY KEY);\nDELETE FROM "Größe";'
    parsed = parse_script(sql)
    assert parsed.statements[1].node.relation.relname == "Grxxe"
    assert rule_findings("statement.where-require-update-delete", sql) == [(3, 13)]


def test_masking_keeps_statement_text_and_literals_structure() -> None:
    sql = "INSERT INTO t (a) VALUES ('日本語; -- not a comment');\n/* 日本 */ INSERT INTO t (a) VALUES ($$ü$$);"
    parsed = parse_script(sql)
    assert [s.sql for s in parsed.statements] == [
        "INSERT INTO t (a) VALUES ('日本語; -- not a comment')",
        "INSERT INTO t (a) VALUES ($$ü$$)",
    ]


@pytest.mark.parametrize(
    ("sql", "position", "message"),
    [
        ("SELECT 1;\nSELECT 'é', 2\n  FROM t WHERE;", (3, 15), 'syntax error at or near ";"'),
        ("SELECT 'ü';\nSELEC 1;", (2, 1), 'syntax error at or near "SELEC"'),
        ("SELECT (1", (1, 10), "syntax error at end of input"),
        ("SELECT 'ünterminated", (1, 8), "unterminated quoted string"),
        ("SELECT 1;\nSELECT '\x00';", (2, 9), "invalid character U+0000"),
        ("SELECT '\ud800'", (1, 9), "invalid character U+D800"),
    ],
)
def test_syntax_error_position_and_message(sql: str, position: tuple[int, int], message: str) -> None:
    with pytest.raises(SqlSyntaxError) as raised:
        parse_script(sql)
    assert LineIndex(sql)(raised.value.index) == position
    assert raised.value.message.startswith(message)


def test_lexer_finds_identifiers_outside_literals_and_comments() -> None:
    text = 'SELECT "a""b", E\'it\\\'s x\', $tag$ y $ $tag$, abc$d -- zz\n/* q */ U&"w"'
    assert [name for name, _ in lexer.identifiers(text)] == ["SELECT", 'a"b', "abc$d", "w"]
    assert lexer.mask_literals("SELECT 'é' AS é -- ü") == "SELECT 'x' AS é -- x"


def test_masking_a_dollar_quoted_body_keeps_its_end() -> None:
    assert lexer.mask_literals("SELECT $x$ $é$ $x$, $y$ é $y$") == "SELECT $x$ $y$ $x$, $y$ x $y$"
    assert lexer.mask_literals("SELECT $xyzXYZ$ é $xyzXYZ$") == "SELECT $xyzXYZ$ é $xyzXYZ$"
    sql = "SELECT $x$ $日$; DROP TABLE t; SELECT $本$ $x$;"
    assert [type(stmt.node).__name__ for stmt in parse_script(sql).statements] == ["SelectStmt"]


@pytest.mark.parametrize("rule", [rule for rule in ALL_RULES if rule.bad], ids=lambda rule: rule.name)
def test_collect_groups_walk_by_type(rule: Rule) -> None:
    for sql in (*rule.bad, *rule.good):
        for stmt in parse_script(sql).statements:
            grouped: dict[type, list] = {}
            for node in script.walk(stmt.node):
                grouped.setdefault(type(node), []).append(node)
            assert script.collect(stmt.node) == grouped
            assert all(a is b for kind in grouped for a, b in zip(stmt.nodes[kind], grouped[kind], strict=True))


def test_small_scripts_are_parsed_without_a_parser_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    on_deep_stack = script._on_deep_stack
    monkeypatch.setattr(
        script, "_on_deep_stack", lambda function, text: threads.append(text) or on_deep_stack(function, text)
    )
    small, large = "SELECT " + "1+" * 1020 + "1", "SELECT " + "é" * 1021
    assert len(small.encode()) <= script._INLINE_PARSE_BYTES < len(large.encode())
    parse_script(small)
    parse_script(large)
    assert threads == [large]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("SELECT 1;", 8),
        ("SELECT  1 ;\n\n", 8),
        ("-- a comment\nSELECT 1; /* block /* nested */ still */ SELECT 2;", 16),
        ("SELECT '-- not a comment' ;", 22),
        ("SELECT 'é';", 11),
        ("/* unterminated", 0),
    ],
)
def test_code_size_leaves_out_comments_and_whitespace(text: str, size: int) -> None:
    assert not lexer.code_exceeds(text, limit=size)
    assert size == 0 or lexer.code_exceeds(text, limit=size - 1)


def test_code_size_counts_past_long_stretches_without_comments() -> None:
    text = "-- c\n" + "SELECT 1;" * 100_000 + "-- " + "x" * 10**6
    assert lexer.code_exceeds(text, limit=800_000 - 1) and not lexer.code_exceeds(text, limit=800_000)


def _tree(raws: tuple) -> list:
    """Every attribute of every node, locations included."""
    return [raw(skip_none=False) for raw in raws]


CORPUS_TEXTS = [Generator(20240607).migration(number)[1] for number in range(1, 41)]  # bench/corpus.py's
EXAMPLES_AND_CORPUS = [sql for rule in ALL_RULES for sql in (*rule.bad, *rule.good)] + CORPUS_TEXTS


@pytest.mark.parametrize("sql", [*EXAMPLES_AND_CORPUS])
def test_fast_parse_builds_the_tree_pglast_builds(sql: str) -> None:
    assert _tree(script.parse_sql(sql)) == _tree(tuple(pglast.parse_sql(sql)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(EXAMPLES_AND_CORPUS[:120]) | st.text(max_size=8), max_size=4))
def test_fast_parse_matches_pglast_on_any_text(pieces: list[str]) -> None:
    sql = ";\n".join(pieces)
    try:
        expected = _tree(tuple(pglast.parse_sql(sql)))
    except pglast.parser.ParseError as error:
        with pytest.raises(pglast.parser.ParseError) as raised:
            script.parse_sql(sql)
        assert raised.value.args == error.args
    else:
        assert _tree(script.parse_sql(sql)) == expected


def test_pglast_is_itself_again_after_a_parse() -> None:
    from pglast import ast

    script.parse_sql("SELECT 1")
    with pytest.raises(pglast.parser.ParseError):
        script.parse_sql("SELEC 1")
    with pytest.raises(ValueError, match="Bad value"):
        ast.RangeVar(relname=42)  # pglast's own type check is back in force


def test_plain_building_ends_when_its_last_user_leaves() -> None:
    """Nested and concurrent users (a batch, the parser thread inside it) share one switch."""
    import threading

    from pglast import ast

    big = "SELECT 1;\n" * 400  # over 2 KiB: parsed in a parser thread, while this thread is in the batch
    with script.plain_node_building():
        assert ast.Node.__setattr__ is object.__setattr__
        parsed = parse_script(big)
        threads = [threading.Thread(target=parse_script, args=(big,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert ast.Node.__setattr__ is object.__setattr__  # still inside the batch
    assert len(parsed.statements) == 400
    with pytest.raises(ValueError, match="Bad value"):
        ast.RangeVar(relname=42)
