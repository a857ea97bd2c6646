"""INSERT without a column list.

Values are matched to columns by position, so the statement fails, or silently writes values
into the wrong columns, once the table's columns change.

Fix: name the target columns.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "INSERT INTO orders VALUES (1, 'new')",
    "INSERT INTO orders_archive SELECT id, status FROM orders WHERE id < 100",
]
GOOD = [
    "INSERT INTO orders (id, status) VALUES (1, 'new')",
    "INSERT INTO orders DEFAULT VALUES",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, insert in ctx.script.find(ast.InsertStmt):
        if not insert.cols and insert.selectStmt is not None:
            table = relation_key(insert.relation)
            yield Finding(
                f'INSERT into "{table}" has no column list: values are matched to columns by position, so '
                "the statement fails, or silently writes values into the wrong columns, as soon as a "
                f"column is added, dropped or reordered. Name the columns: INSERT INTO {table} (a, b) ...",
                stmt.at(insert.relation),
            )


RULE = Rule("statement.insert-must-specify-column", 204, Level.WARNING, __doc__, check, BAD, GOOD)
