"""Column names (CREATE TABLE, ADD COLUMN, RENAME COLUMN) that do not match the `pattern` option
(default: lower case letters, digits and underscores, starting with a letter).

Consistent lower-case names keep the schema readable and spare every query double quotes.

Fix: rename the column to match the project's pattern.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from plancheck.checks.rules.base import Finding, Level, Named, Rule, RuleContext, misnamed

BAD = [
    'CREATE TABLE orders (id bigint PRIMARY KEY, "createdAt" timestamptz)',
    'ALTER TABLE orders ADD COLUMN "Note" text',
    'ALTER TABLE orders RENAME COLUMN note TO "customer note"',
]
GOOD = [
    "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz)",
    "ALTER TABLE orders ADD COLUMN note2 text",
    "ALTER TABLE orders RENAME COLUMN note TO customer_note",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    pattern = ctx.options["pattern"]
    names = [(stmt, Named(column.colname, column)) for stmt, column in ctx.script.find(ast.ColumnDef)]
    renames = [
        (stmt, Named(rename.newname, rename.relation))
        for stmt, rename in ctx.script.top(ast.RenameStmt)
        if rename.renameType == ObjectType.OBJECT_COLUMN
    ]
    if renames:  # in statement order with the definitions
        names = sorted(names + renames, key=lambda pair: pair[0].ordinal)
    yield from misnamed("column", names, pattern)


RULE = Rule(
    "naming.column", 303, Level.WARNING, __doc__, check, BAD, GOOD, default_options={"pattern": "^[a-z][a-z0-9_]*$"}
)
