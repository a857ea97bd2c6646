"""Columns defined as varchar(n) in CREATE TABLE or ADD COLUMN (changing an existing column's type
is schema.backward-compatibility's concern; widening it to a larger n or to text is cheap).

In PostgreSQL varchar(n) is text with a length check built into the type: it is no faster, and
raising the limit later is an ALTER COLUMN ... TYPE, which takes an ACCESS EXCLUSIVE lock (and
rewrites the table if the type changes in any other way).

Fix: use text, with a CHECK (char_length(col) <= n) constraint when the limit matters; a CHECK
can be replaced NOT VALID and validated without blocking writes.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import type_name

BAD = [
    "CREATE TABLE customers (id bigint PRIMARY KEY, email varchar(255))",
    "ALTER TABLE customers ADD COLUMN phone character varying(32)",
]
GOOD = [
    "CREATE TABLE customers (id bigint PRIMARY KEY, email text CHECK (char_length(email) <= 255))",
    "CREATE TABLE customers (id bigint PRIMARY KEY, email varchar)",
    "ALTER TABLE customers ALTER COLUMN email TYPE varchar(320)",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, column in ctx.script.find(ast.ColumnDef):
        retyped = any(
            cmd.def_ is column and cmd.subtype == AlterTableType.AT_AlterColumnType
            for cmd in stmt.find(ast.AlterTableCmd)
        )
        limited = column.typeName is not None and bool(column.typeName.typmods)
        if type_name(column) == "varchar" and limited and not retyped:
            yield Finding(
                f'Column "{column.colname}" is varchar(n): in PostgreSQL that is text with a length check built '
                "into the type, no faster, and raising the limit later is an ALTER COLUMN ... TYPE under an "
                f"ACCESS EXCLUSIVE lock. Use text, with CHECK (char_length({column.colname}) <= n) if the limit "
                "matters: a CHECK can be replaced NOT VALID and validated without blocking writes.",
                stmt.at(column),
            )


RULE = Rule("column.type-disallow-varchar-length", 409, Level.WARNING, __doc__, check, BAD, GOOD)
