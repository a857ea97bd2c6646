"""Table names (CREATE TABLE, CREATE TABLE AS, RENAME TO) that do not match the `pattern` option
(default: lower case letters, digits and underscores, starting with a letter).

Consistent lower-case names keep the schema readable and spare every query double quotes.

Fix: rename the table to match the project's pattern.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from plancheck.checks.rules.base import Finding, Level, Named, Rule, RuleContext, misnamed

BAD = [
    'CREATE TABLE "OrderItems" (id bigint PRIMARY KEY)',
    "CREATE TABLE order$items (id bigint PRIMARY KEY)",
    'ALTER TABLE orders RENAME TO "Orders"',
]
GOOD = [
    "CREATE TABLE order_items (id bigint PRIMARY KEY)",
    "CREATE TABLE sales.order_items_2024 AS SELECT id FROM orders",
    "ALTER TABLE orders RENAME TO purchase_orders",
]


def _table_names(node: ast.Node) -> list[Named]:
    if isinstance(node, ast.CreateStmt) and node.relation is not None:
        return [Named(node.relation.relname, node.relation)]
    if isinstance(node, ast.CreateTableAsStmt) and node.objtype == ObjectType.OBJECT_TABLE and node.into is not None:
        return [Named(node.into.rel.relname if node.into.rel else None, node.into.rel)]
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_TABLE:
        return [Named(node.newname, node.relation)]
    return []


def check(ctx: RuleContext) -> Iterator[Finding]:
    kinds = (ast.CreateStmt, ast.CreateTableAsStmt, ast.RenameStmt)
    names = ((stmt, named) for stmt, node in ctx.script.top_of(*kinds) for named in _table_names(node))
    yield from misnamed("table", names, ctx.options["pattern"])


RULE = Rule(
    "naming.table", 302, Level.WARNING, __doc__, check, BAD, GOOD, default_options={"pattern": "^[a-z][a-z0-9_]*$"}
)
