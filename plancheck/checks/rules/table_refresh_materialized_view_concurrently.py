"""REFRESH MATERIALIZED VIEW without CONCURRENTLY, of a view the script did not create.

A plain refresh holds an ACCESS EXCLUSIVE lock on the view while it runs the whole query again:
every read of the view blocks for the duration, which is as long as the view's query takes.

Fix: REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view), which lets
reads continue and swaps in the new rows at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "REFRESH MATERIALIZED VIEW order_totals",
    "REFRESH MATERIALIZED VIEW reports.order_totals WITH NO DATA",
]
GOOD = [
    "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals",
    "CREATE MATERIALIZED VIEW v AS SELECT 1 AS a WITH NO DATA; REFRESH MATERIALIZED VIEW v",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, refresh in ctx.script.top(ast.RefreshMatViewStmt):
        if refresh.concurrent or refresh.relation is None:
            continue
        view = relation_key(refresh.relation)
        if not ctx.script.is_new(view, stmt):
            yield Finding(
                f'REFRESH MATERIALIZED VIEW "{view}" without CONCURRENTLY holds an ACCESS EXCLUSIVE lock on the '
                "view while its whole query runs again: every read of the view blocks until it is done. Use "
                "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view), which lets reads "
                "continue.",
                stmt.at(refresh.relation),
            )


RULE = Rule("table.refresh-materialized-view-concurrently", 605, Level.WARNING, __doc__, check, BAD, GOOD)
