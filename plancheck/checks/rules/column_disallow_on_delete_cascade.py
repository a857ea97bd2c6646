"""Foreign keys with ON DELETE CASCADE.

One DELETE on the referenced table silently deletes the referencing rows too - possibly millions,
in one transaction, holding locks and generating WAL - and a mistaken delete wipes dependent data.

Fix: use RESTRICT or NO ACTION and delete dependent rows explicitly, in batches.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id) ON DELETE CASCADE)",
    "ALTER TABLE items ADD CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id) "
    "ON DELETE CASCADE NOT VALID",
]
GOOD = [
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id) ON DELETE RESTRICT)",
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id) ON UPDATE CASCADE)",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, constraint in ctx.script.find(ast.Constraint):
        if constraint.contype == ConstrType.CONSTR_FOREIGN and constraint.fk_del_action == "c":
            parent = relation_key(constraint.pktable)
            yield Finding(
                f'Foreign key to "{parent}" uses ON DELETE CASCADE: one DELETE on "{parent}" silently '
                "deletes the referencing rows too - possibly millions, in one transaction, holding locks and "
                "generating WAL - and a mistaken delete wipes dependent data. Use ON DELETE RESTRICT (or NO "
                "ACTION) and delete dependent rows explicitly, in batches.",
                stmt.at(constraint),
            )


RULE = Rule("column.disallow-on-delete-cascade", 405, Level.WARNING, __doc__, check, BAD, GOOD)
