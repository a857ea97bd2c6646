"""UPDATE, DELETE or MERGE (also inside a WITH clause) estimated by EXPLAIN on the target to change
more than max_rows rows. Skipped when no target is at hand or the estimate is unknown; the estimate
counts every data-modifying part of the statement (`WITH d AS (DELETE …) SELECT …` included), not
the subqueries that only compute values.

One large data change holds row locks on every affected row until it commits, produces a burst
of WAL that replicas must replay, and bloats the table.

Fix: run it in batches (e.g. primary key ranges of a few thousand rows, each committed separately).
"""

from __future__ import annotations

from collections.abc import Iterator

from plancheck.checks.estimate import modifications
from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

# Checked with an estimator that reports 1,000,000 rows for every statement.
BAD = [
    "DELETE FROM orders WHERE created_at < '2020-01-01'",
    "UPDATE orders SET status = 'archived' WHERE status = 'done'",
    "WITH gone AS (DELETE FROM orders WHERE status = 'done' RETURNING id) SELECT count(*) FROM gone",
]
GOOD = [
    "INSERT INTO orders (id, status) VALUES (1, 'new')",
    "SELECT count(*) FROM orders",
]
# INSERT adds rows without locking existing ones: a large INSERT … SELECT is another concern.
_LOCKING = frozenset({"UPDATE", "DELETE", "MERGE"})


def check(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.estimate_rows is None:
        return
    limit = ctx.options["max_rows"]
    for stmt in ctx.script.statements:
        changes = [(kind, part) for kind, part in modifications(stmt.node) if kind in _LOCKING]
        if not changes:
            continue
        rows = ctx.estimate_rows(stmt.sql)
        if rows is not None and rows > limit:
            what = " and ".join(f'{kind} on "{relation_key(part.relation)}"' for kind, part in changes)
            yield Finding(
                f"{what} is estimated to affect about {rows:,} rows "
                f"(limit {limit:,}): one statement that large holds row locks on all of them until it commits, "
                "produces a burst of WAL that replicas must replay, and bloats the table. Run it in batches "
                "(e.g. primary key ranges of a few thousand rows, each committed separately).",
                stmt.at(),
            )


RULE = Rule(
    "statement.affected-row-limit", 209, Level.WARNING, __doc__, check, BAD, GOOD, default_options={"max_rows": 1000}
)
