"""Columns of type char(n) / character(n).

Values are blank-padded to n characters, trailing spaces are significant in some operations and
ignored in others, and the type is no faster than text in PostgreSQL.

Fix: use text (with a CHECK on its length if the limit matters).
"""

from __future__ import annotations

from collections.abc import Iterator

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import column_types

BAD = [
    "CREATE TABLE currencies (id bigint PRIMARY KEY, code char(3))",
    "ALTER TABLE orders ADD COLUMN currency character(3)",
    "ALTER TABLE orders ALTER COLUMN currency TYPE char(3)",
]
GOOD = [
    'CREATE TABLE currencies (id bigint PRIMARY KEY, code varchar(3), kind "char", name text)',
    "SELECT 'EUR'::char(3)",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, column, name, type_name in column_types(ctx.script):
        if type_name == "bpchar":
            yield Finding(
                f'Column "{name}" is char(n): values are blank-padded to n characters, trailing spaces count in '
                "some operations and are ignored in others (a classic source of mismatched joins and "
                "lookups), and it is no faster than text in PostgreSQL. Use text, or varchar(n) if the limit "
                "matters.",
                stmt.at(column),
            )


RULE = Rule("column.type-disallow-char", 403, Level.WARNING, __doc__, check, BAD, GOOD)
