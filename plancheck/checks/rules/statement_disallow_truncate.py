"""TRUNCATE of a table that exists before the script (tables created by the same script are
exempt).

TRUNCATE deletes every row at once under an ACCESS EXCLUSIVE lock, cannot be filtered, is not
MVCC-safe for concurrent transactions, and the data is only recoverable from a backup.

Fix: DELETE the intended rows with a WHERE clause, or empty the table in a reviewed maintenance
plan.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import items, relation_key

BAD = [
    "TRUNCATE orders",
    "TRUNCATE TABLE orders, items",
]
GOOD = [
    "CREATE TABLE staging (id bigint PRIMARY KEY); TRUNCATE staging",
    "DELETE FROM orders WHERE created_at < '2020-01-01'",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        if not isinstance(stmt.node, ast.TruncateStmt):
            continue
        for relation in items(stmt.node.relations):
            table = relation_key(relation)
            if not ctx.script.is_new(table, stmt):
                yield Finding(
                    f'TRUNCATE "{table}" deletes every row at once under an ACCESS EXCLUSIVE lock that blocks '
                    "all reads and writes, cannot be filtered, and the data can only be recovered from a "
                    "backup. If the data really must go, do it in a reviewed maintenance plan; otherwise "
                    "DELETE the intended rows with a WHERE clause.",
                    stmt.at(relation),
                )


RULE = Rule("statement.disallow-truncate", 206, Level.ERROR, __doc__, check, BAD, GOOD)
