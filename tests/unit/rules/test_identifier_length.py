"""naming.identifier-max-length at its edges: quoting, multi-byte names, where names are not names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME, lexer, script
from plancheck.checks.rules.base import RuleContext
from plancheck.checks.rules.script import SqlSyntaxError, parse_script

RULE = RULES_BY_NAME["naming.identifier-max-length"]


def long_names(sql: str) -> list[tuple[str, int]]:
    """(name in the finding's message, index) of each finding."""
    findings = RULE.check(RuleContext(parse_script(sql), RULE.resolve_options({})))
    return [
        (re.match(r'Identifier "(.*)" is \d+ bytes long', finding.message)[1], finding.index) for finding in findings
    ]


def lexed_long_names(sql: str) -> list[tuple[str, int]]:
    """What the rule found when it lexed every script in Python: the behaviour to keep."""
    found: dict[str, int] = {}
    for name, index in lexer.identifiers(sql):
        if len(name.encode()) > 63:
            found.setdefault(name, index)
    return list(found.items())


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (f"CREATE TABLE {'a' * 63} (id int)", []),
        (f"CREATE TABLE {'a' * 64} (id int)", [("a" * 64, 13)]),
        (f"CREATE TABLE {'A' * 64} (id int)", [("A" * 64, 13)]),  # as written, before folding to lower case
        (f"CREATE TABLE t{'$' * 63} (id int)", [("t" + "$" * 63, 13)]),
        (f'CREATE TABLE "{"b" * 64}" (id int)', [("b" * 64, 13)]),
        (f'CREATE TABLE "{"b" * 63}" (id int)', []),
        (f'CREATE TABLE "a""{"c" * 61}" (id int)', []),  # a"ccc…: the doubled quote is one byte
        (f'CREATE TABLE "a""{"c" * 62}" (id int)', [('a"' + "c" * 62, 13)]),
        (f'CREATE TABLE "a b {"c" * 61}" (id int)', [("a b " + "c" * 61, 13)]),
        (f"CREATE TABLE {'é' * 31}a (id int)", []),  # 63 bytes
        (f"CREATE TABLE {'é' * 32} (id int)", [("é" * 32, 13)]),  # 32 characters, 64 bytes
        (f'CREATE TABLE "{"日" * 22}" (id int)', [("日" * 22, 13)]),
        (f'SELECT U&"{"d" * 64}"', [("d" * 64, 7)]),
        (f"SELECT 1 AS {'x' * 70}, 2 AS {'x' * 70}, 3 AS {'y' * 70}", [("x" * 70, 12), ("y" * 70, 166)]),
        (f"SELECT '{'s' * 70}', E'\\'{'t' * 70}', $q${'u' * 70}$q$", []),
        (f"SELECT 1 -- {'c' * 70}\n/* {'d' * 70} /* nested */ {'e' * 70} */", []),
        (f'SELECT $fn$ "{"q" * 70}" $fn$', []),
        (f"COMMENT ON TABLE t IS '{'é' * 40}'", []),
    ],
)
def test_long_names(sql: str, expected: list[tuple[str, int]]) -> None:
    assert long_names(sql) == expected
    assert lexed_long_names(sql) == expected


def test_text_with_much_non_ascii_is_lexed_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    sql = f"COMMENT ON TABLE t IS 'ü';\nCREATE TABLE {'é' * 32} (id int);\nSELECT \"{'ö' * 40}\""
    expected = [("é" * 32, 40), ("ö" * 40, 90)]
    assert long_names(sql) == expected
    monkeypatch.setattr(script, "_OFFSET_MAPPING_BUDGET", 0)
    assert long_names(sql) == expected


EXAMPLES = [sql for rule in ALL_RULES for sql in (*rule.bad, *rule.good)]
PIECES = [
    "'",
    '"',
    '""',
    "$$",
    "$a$",
    "/*",
    "*/",
    "--",
    ";",
    "\n",
    "(",
    'U&"',
    "E'\\",
    "é",
    "日本",
    "a" * 40,
    "é" * 20,
    '"' + "q" * 40,
    "$x$" + "z" * 40,
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(EXAMPLES) | st.sampled_from(PIECES) | st.text(max_size=5), max_size=8))
def test_same_findings_as_the_python_lexer(pieces: list[str]) -> None:
    sql = " ".join(pieces)
    try:
        parse_script(sql)
    except SqlSyntaxError:
        return
    assert long_names(sql) == lexed_long_names(sql)
