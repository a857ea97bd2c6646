"""ALTER COLUMN ... SET NOT NULL on an existing table without a validated IS NOT NULL check.

SET NOT NULL scans the whole table for NULLs while holding an ACCESS EXCLUSIVE lock, blocking
all reads and writes. Since PostgreSQL 12 the scan is skipped when a valid CHECK (col IS NOT
NULL) exists.

Fix: add that check NOT VALID, VALIDATE it in a later statement, then SET NOT NULL. That
sequence is recognised and not flagged.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Statement, alter_commands, altered_table, constraint_of, last_field

BAD = [
    "ALTER TABLE orders ALTER COLUMN status SET NOT NULL",
    "ALTER TABLE orders ADD CONSTRAINT chk_status_nn CHECK (status IS NOT NULL) NOT VALID; "
    "ALTER TABLE orders ALTER COLUMN status SET NOT NULL",
    "ALTER TABLE orders ADD CONSTRAINT chk_status_nn CHECK (status IS NOT NULL) NOT VALID, "
    "VALIDATE CONSTRAINT chk_status_nn, ALTER COLUMN status SET NOT NULL",
]
GOOD = [
    "CREATE TABLE t (id bigint PRIMARY KEY, a int); ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE orders ADD CONSTRAINT chk_status_nn CHECK (status IS NOT NULL) NOT VALID; "
    "ALTER TABLE orders VALIDATE CONSTRAINT chk_status_nn; "
    "ALTER TABLE orders ALTER COLUMN status SET NOT NULL; "
    "ALTER TABLE orders DROP CONSTRAINT chk_status_nn",
]


def _not_null_column(constraint: ast.Node | None) -> str | None:
    """col when constraint is CHECK (col IS NOT NULL)."""
    expr = getattr(constraint, "raw_expr", None)
    if (
        getattr(constraint, "contype", None) == ConstrType.CONSTR_CHECK
        and isinstance(expr, ast.NullTest)
        and expr.nulltesttype == NullTestType.IS_NOT_NULL
        and isinstance(expr.arg, ast.ColumnRef)
        and len(expr.arg.fields or ()) == 1
    ):
        return getattr(last_field(expr.arg), "sval", None)
    return None


def check(ctx: RuleContext) -> Iterator[Finding]:
    proven: set[tuple[str, str]] = set()  # (table, column) with a valid CHECK (column IS NOT NULL)
    pending: dict[tuple[str, str | None], str] = {}  # (table, constraint) -> column, added NOT VALID
    for stmt, _ in ctx.script.top(ast.AlterTableStmt):
        table = altered_table(stmt)
        if table is None or ctx.script.is_new(table, stmt):
            continue
        commands = alter_commands(stmt.node)
        for cmd in commands:
            if cmd.subtype == AlterTableType.AT_SetNotNull and cmd.name and (table, cmd.name) not in proven:
                yield _finding(stmt, table, cmd.name)
        for cmd in commands:  # a check proven here only helps later statements
            constraint = constraint_of(cmd)
            column = _not_null_column(constraint)
            if column and constraint is not None and constraint.skip_validation:
                pending[(table, constraint.conname)] = column
            elif column:
                proven.add((table, column))
            elif cmd.subtype == AlterTableType.AT_ValidateConstraint and (table, cmd.name) in pending:
                proven.add((table, pending[(table, cmd.name)]))


def _finding(stmt: Statement, table: str, column: str) -> Finding:
    check_name = f"chk_{column}_not_null"
    return Finding(
        f'ALTER COLUMN "{column}" SET NOT NULL on "{table}" scans the whole table for NULLs while holding an '
        "ACCESS EXCLUSIVE lock, blocking all reads and writes until it finishes. Instead, in separate "
        f"statements: ADD CONSTRAINT {check_name} CHECK ({column} IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT "
        f"{check_name} (reads and writes continue); then SET NOT NULL, which PostgreSQL 12+ proves from the "
        f"valid check without a scan; then DROP CONSTRAINT {check_name}.",
        stmt.at(),
    )


RULE = Rule("column.disallow-set-not-null", 401, Level.WARNING, __doc__, check, BAD, GOOD)
