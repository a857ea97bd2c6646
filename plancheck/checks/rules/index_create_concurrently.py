"""CREATE INDEX without CONCURRENTLY on a table that exists before the script (indexes on tables
created by the script are exempt).

A plain CREATE INDEX holds a SHARE lock for the whole build, blocking every INSERT, UPDATE and
DELETE on the table (minutes on a large one).

Fix: use CREATE INDEX CONCURRENTLY outside a transaction block.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "CREATE INDEX idx_orders_status ON orders (status)",
    "CREATE UNIQUE INDEX uk_orders_ref ON orders (ref)",
]
GOOD = [
    "CREATE INDEX CONCURRENTLY idx_orders_status ON orders (status)",
    "CREATE TABLE t (id bigint PRIMARY KEY, a int); CREATE INDEX idx_t_a ON t (a)",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, node in ctx.script.top(ast.IndexStmt):
        if not node.concurrent:
            table = relation_key(node.relation)
            if not ctx.script.is_new(table, stmt):
                yield Finding(
                    f'CREATE INDEX on "{table}" without CONCURRENTLY holds a SHARE lock for the whole build, '
                    "blocking every INSERT, UPDATE and DELETE on the table until it finishes (minutes on a large "
                    "table). Use CREATE INDEX CONCURRENTLY, outside any transaction block; if it fails, drop the "
                    "INVALID index it leaves behind and retry.",
                    stmt.at(),
                )


RULE = Rule("index.create-concurrently", 801, Level.WARNING, __doc__, check, BAD, GOOD)
