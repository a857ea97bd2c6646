"""ADD COLUMN ... NOT NULL without a DEFAULT on an existing table.

The new column is NULL in every existing row, so the statement fails with "column contains null
values" as soon as the table has a row: it passes on an empty test database and breaks the
production rollout.

Fix: give it a DEFAULT (constant defaults are instant since PostgreSQL 11), or add it nullable,
backfill, and enforce NOT NULL afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import SERIAL_TYPES, column_of, constraints, type_name

BAD = [
    "ALTER TABLE orders ADD COLUMN region text NOT NULL",
    "ALTER TABLE orders ADD COLUMN region text NOT NULL REFERENCES regions (code)",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN region text NOT NULL DEFAULT 'eu'",
    "ALTER TABLE orders ADD COLUMN region text",
    "ALTER TABLE orders ADD COLUMN seq bigint NOT NULL GENERATED ALWAYS AS IDENTITY",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN region text NOT NULL",
]

_FILLED = {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}


def _fails_on_existing_rows(column: ast.ColumnDef) -> bool:
    kinds = {constraint.contype for constraint in constraints(column)}
    not_null = column.is_not_null or ConstrType.CONSTR_NOTNULL in kinds
    filled = bool(kinds & _FILLED) or type_name(column) in SERIAL_TYPES
    return bool(not_null) and not filled


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in ctx.script.existing_alters:
        column = column_of(cmd)
        if cmd.subtype == AlterTableType.AT_AddColumn and column is not None and _fails_on_existing_rows(column):
            yield Finding(
                f'Adding column "{column.colname}" to "{table}" as NOT NULL without a DEFAULT fails with '
                '"column contains null values" as soon as the table has a row, so it passes on an empty test '
                "database and breaks the production rollout. Add a DEFAULT (a constant default is instant "
                "since PostgreSQL 11), or add the column nullable, backfill it, and enforce NOT NULL afterwards.",
                stmt.at(column),
            )


RULE = Rule("column.add-not-null-require-default", 406, Level.ERROR, __doc__, check, BAD, GOOD)
