"""Consecutive ALTER TABLE statements on the same existing table that could be one. Not flagged:
statements separated by other work (e.g. a backfill), and the NOT VALID / VALIDATE CONSTRAINT
steps, which must stay separate.

Each ALTER TABLE waits for its own ACCESS EXCLUSIVE lock (queuing every other query on the
table behind it) and may rewrite the table again.

Fix: merge them into one statement with comma-separated actions.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Statement, alter_commands, altered_table

BAD = [
    "ALTER TABLE orders ADD COLUMN note text; ALTER TABLE orders ADD COLUMN source text;",
    "ALTER TABLE orders DROP COLUMN a; ALTER TABLE orders DROP COLUMN b; ALTER TABLE orders DROP COLUMN c;",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN note text, ADD COLUMN source text",
    "ALTER TABLE orders ADD COLUMN note text; UPDATE orders SET note = '' WHERE id < 1000; "
    "ALTER TABLE orders ALTER COLUMN note SET DEFAULT ''",
    "ALTER TABLE orders ADD CONSTRAINT chk_total CHECK (total >= 0) NOT VALID; "
    "ALTER TABLE orders VALIDATE CONSTRAINT chk_total",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN a int; ALTER TABLE t ADD COLUMN b int",
    "ALTER TABLE orders ADD COLUMN note text; ALTER TABLE items ADD COLUMN note text",
]


def _mergeable_table(ctx: RuleContext, stmt: Statement) -> str | None:
    """The existing table stmt alters, unless it is a NOT VALID / VALIDATE step."""
    table = altered_table(stmt)
    if table is None or ctx.script.is_new(table, stmt):
        return None
    for cmd in alter_commands(stmt.node):
        if cmd.subtype == AlterTableType.AT_ValidateConstraint:
            return None
        if isinstance(cmd.def_, ast.Constraint) and cmd.def_.skip_validation:
            return None
    return table


def check(ctx: RuleContext) -> Iterator[Finding]:
    runs: list[tuple[str, list[Statement]]] = []
    for stmt, _ in ctx.script.top(ast.AlterTableStmt):
        table = _mergeable_table(ctx, stmt)
        if table is not None and runs and runs[-1][0] == table and runs[-1][1][-1].ordinal == stmt.ordinal - 1:
            runs[-1][1].append(stmt)
        elif table is not None:
            runs.append((table, [stmt]))
    for table, stmts in runs:
        if len(stmts) > 1:
            first, last = (ctx.script.lines(s.start)[0] for s in (stmts[0], stmts[-1]))
            lines = f"line {first}" if first == last else f"lines {first} to {last}"
            yield Finding(
                f'{len(stmts)} consecutive ALTER TABLE statements on "{table}" ({lines}) each '
                "wait for their own ACCESS EXCLUSIVE lock, queuing every query on the table behind them, and "
                f"may rewrite the table again. Merge them into one ALTER TABLE {table} with comma-separated "
                "actions.",
                stmts[1].at(),
            )


RULE = Rule("statement.merge-alter-table", 208, Level.WARNING, __doc__, check, BAD, GOOD)
