"""CLUSTER of a table the script did not create (or of every previously clustered table, when
none is named).

CLUSTER rewrites the table and all its indexes in index order while holding an ACCESS EXCLUSIVE
lock: no read or write of the table gets through until it is done, which takes minutes to hours
on a large table.

Fix: rebuild the table online with pg_repack (--order-by for the clustering) in a maintenance
window, or create the table clustered in the first place.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "CLUSTER orders USING idx_orders_created_at",
    "CLUSTER",
]
GOOD = [
    "CREATE TABLE t (id bigint PRIMARY KEY); CLUSTER t USING t_pkey",
    "ALTER TABLE orders CLUSTER ON idx_orders_created_at",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, cluster in ctx.script.top(ast.ClusterStmt):
        table = relation_key(cluster.relation) if cluster.relation is not None else None
        if table is None or not ctx.script.is_new(table, stmt):
            what = f'"{table}"' if table else "every table clustered before"
            yield Finding(
                f"CLUSTER rewrites {what} and all its indexes in index order while holding an ACCESS EXCLUSIVE "
                "lock: no read or write gets through until it is done, minutes to hours on a large table. "
                "Rebuild the table online with pg_repack (--order-by) in a maintenance window instead.",
                stmt.at(),
            )


RULE = Rule("table.disallow-cluster", 604, Level.WARNING, __doc__, check, BAD, GOOD)
