"""UPDATE or DELETE without a WHERE clause.

Such a statement changes every row of the table: it locks all of them, bloats the table and
cannot be undone without a backup, and is almost always a mistake in a migration.

Fix: add a WHERE clause that selects only the intended rows.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "DELETE FROM orders",
    "UPDATE orders SET status = 'archived'",
    "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(id) FROM gone",
]
GOOD = [
    "DELETE FROM orders WHERE id = 42",
    "UPDATE orders SET status = 'archived' WHERE created_at < '2020-01-01'",
]

_HARM = {
    ast.DeleteStmt: "it removes every row of the table, locking each one and generating WAL for all of them, "
    "and cannot be undone without a backup. Add a WHERE clause, or TRUNCATE deliberately in a "
    "reviewed maintenance plan.",
    ast.UpdateStmt: "it rewrites every row of the table, locking each one and bloating the table and its "
    "indexes, and cannot be undone without a backup. Add a WHERE clause that selects only the rows "
    "to change.",
}


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        nodes: list[ast.DeleteStmt | ast.UpdateStmt] = [*stmt.find(ast.DeleteStmt), *stmt.find(ast.UpdateStmt)]
        for node in nodes:
            if node.whereClause is None:
                verb = "DELETE" if isinstance(node, ast.DeleteStmt) else "UPDATE"
                table = relation_key(node.relation)
                yield Finding(f'{verb} on "{table}" has no WHERE clause: {_HARM[type(node)]}', stmt.at(node.relation))


RULE = Rule("statement.where-require-update-delete", 202, Level.ERROR, __doc__, check, BAD, GOOD)
