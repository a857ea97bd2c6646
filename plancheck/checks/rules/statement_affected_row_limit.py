"""UPDATE or DELETE estimated (by EXPLAIN on the target) to touch more than max_rows rows. Skipped
when no target is at hand or the estimate is unknown.

One large data change holds row locks on every affected row until it commits, produces a burst
of WAL that replicas must replay, and bloats the table.

Fix: run it in batches (e.g. primary key ranges of a few thousand rows, each committed separately).
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

# Checked with an estimator that reports 1,000,000 rows for every statement.
BAD = [
    "DELETE FROM orders WHERE created_at < '2020-01-01'",
    "UPDATE orders SET status = 'archived' WHERE status = 'done'",
]
GOOD = [
    "INSERT INTO orders (id, status) VALUES (1, 'new')",
    "SELECT count(*) FROM orders",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.estimate_rows is None:
        return
    limit = ctx.options["max_rows"]
    for stmt in ctx.script.statements:
        if not isinstance(stmt.node, (ast.UpdateStmt, ast.DeleteStmt)):
            continue
        rows = ctx.estimate_rows(stmt.sql)
        if rows is not None and rows > limit:
            verb = "UPDATE" if isinstance(stmt.node, ast.UpdateStmt) else "DELETE"
            yield Finding(
                f'{verb} on "{relation_key(stmt.node.relation)}" is estimated to affect about {rows:,} rows '
                f"(limit {limit:,}): one statement that large holds row locks on all of them until it commits, "
                "produces a burst of WAL that replicas must replay, and bloats the table. Run it in batches "
                "(e.g. primary key ranges of a few thousand rows, each committed separately).",
                stmt.at(),
            )


RULE = Rule(
    "statement.affected-row-limit", 209, Level.WARNING, __doc__, check, BAD, GOOD, default_options={"max_rows": 1000}
)
