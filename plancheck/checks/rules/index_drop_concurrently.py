"""DROP INDEX without CONCURRENTLY (of an index the script did not create).

A plain DROP INDEX takes an ACCESS EXCLUSIVE lock on the index's table: while it waits for
running queries, every read and write of the table queues behind it.

Fix: use DROP INDEX CONCURRENTLY outside a transaction block.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import items, names_key

BAD = [
    "DROP INDEX idx_orders_status",
    "DROP INDEX IF EXISTS sales.idx_orders_status, idx_orders_ref",
]
GOOD = [
    "DROP INDEX CONCURRENTLY idx_orders_status",
    "CREATE TABLE t (id bigint PRIMARY KEY, a int); CREATE INDEX idx_t_a ON t (a); DROP INDEX idx_t_a",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX and not node.concurrent:
            for index in (names_key(names) for names in items(node.objects)):
                if not ctx.script.is_new(index, stmt):
                    yield Finding(
                        f'DROP INDEX "{index}" without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: '
                        "while it waits for running queries to finish, every read and write of the table queues "
                        "behind it. Use DROP INDEX CONCURRENTLY (one index per statement, outside any "
                        "transaction block).",
                        stmt.at(),
                    )


RULE = Rule("index.drop-concurrently", 802, Level.WARNING, __doc__, check, BAD, GOOD)
