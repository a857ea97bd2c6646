"""SELECT * (or t.*), except inside EXISTS (...).

The result depends on the table's current columns: code, views and INSERT ... SELECT break or
silently change when a column is added, dropped or reordered, and unused columns are read and
sent anyway. A view created with * even freezes the column list at creation.

Fix: list the columns.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import SubLinkType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import last_field, walk

BAD = [
    "SELECT * FROM orders",
    "SELECT o.* FROM orders o JOIN customers c ON c.id = o.customer_id",
    "CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'open'",
    "INSERT INTO orders_archive (id, status) SELECT * FROM orders WHERE id < 100",
]
GOOD = [
    "SELECT id, status FROM orders",
    "SELECT count(*) FROM orders",
    "SELECT id FROM orders o WHERE EXISTS (SELECT * FROM items i WHERE i.order_id = o.id)",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        stars = [ref for ref in stmt.find(ast.ColumnRef) if isinstance(last_field(ref), ast.A_Star)]
        if not stars:
            continue
        exempt = {
            id(node)
            for link in stmt.find(ast.SubLink)
            if link.subLinkType == SubLinkType.EXISTS_SUBLINK
            for node in walk(getattr(link.subselect, "targetList", None))
        }
        star = next((ref for ref in stars if id(ref) not in exempt), None)
        if star is not None:
            yield Finding(
                "SELECT * returns whatever columns the table has when the statement runs: code, views and "
                "INSERT ... SELECT break or silently shift when a column is added, dropped or reordered, and "
                "columns nobody uses are read and transferred. List the columns you need.",
                stmt.at(star),
            )


RULE = Rule("statement.select-no-select-all", 203, Level.WARNING, __doc__, check, BAD, GOOD)
