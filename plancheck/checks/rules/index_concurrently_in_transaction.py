"""CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY or DETACH PARTITION CONCURRENTLY after
BEGIN, before COMMIT.

PostgreSQL refuses these inside a transaction block ("cannot run inside a transaction block"),
so the migration fails at that statement.

Fix: run them outside BEGIN ... COMMIT, each in a statement of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import reindex_concurrently

BAD = [
    "BEGIN; CREATE INDEX CONCURRENTLY idx_orders_status ON orders (status); COMMIT;",
    "START TRANSACTION; DROP INDEX CONCURRENTLY idx_orders_status",
    "BEGIN; REINDEX INDEX CONCURRENTLY idx_orders_status; COMMIT",
    "BEGIN; ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY; COMMIT",
]
GOOD = [
    "CREATE INDEX CONCURRENTLY idx_orders_status ON orders (status)",
    "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY idx_orders_status ON orders (status)",
    "BEGIN; CREATE INDEX idx_orders_status ON orders (status); COMMIT;",
]


def _concurrent_operation(node: ast.Node) -> str | None:
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and reindex_concurrently(node):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.AlterTableStmt) and any(
        isinstance(cmd.def_, ast.PartitionCmd) and cmd.def_.concurrent for cmd in node.cmds or ()
    ):
        return "DETACH PARTITION CONCURRENTLY"
    return None


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        operation = _concurrent_operation(stmt.node) if stmt.in_transaction else None
        if operation:
            yield Finding(
                f"{operation} cannot run inside a transaction block, and this statement comes after BEGIN with "
                'no COMMIT in between: PostgreSQL rejects it with "cannot run inside a transaction block" and '
                "the migration fails here. Move it out of BEGIN ... COMMIT into a statement of its own.",
                stmt.at(),
            )


RULE = Rule("index.concurrently-in-transaction", 803, Level.ERROR, __doc__, check, BAD, GOOD)
