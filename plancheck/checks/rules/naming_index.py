"""Index names (CREATE INDEX, ALTER INDEX ... RENAME TO) that do not match the `pattern` option.

A recognisable prefix tells index names from other relations in plans, logs and error
messages. Default: idx_ (plain) or uk_ (unique) followed by lower case letters, digits and
underscores, e.g. idx_orders_customer_id. Unnamed indexes get PostgreSQL's generated names
and are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext, misnamed

BAD = [
    "CREATE INDEX orders_status ON orders (status)",
    "CREATE UNIQUE INDEX CONCURRENTLY IdxOrdersRef ON orders (ref)",
    "ALTER INDEX idx_orders_status RENAME TO orders_status_index",
]
GOOD = [
    "CREATE INDEX idx_orders_status ON orders (status)",
    "CREATE UNIQUE INDEX uk_orders_ref ON orders (ref)",
    "CREATE INDEX ON orders (status)",
]


def _index_names(node: ast.Node) -> list[tuple[str | None, ast.Node | None]]:
    if isinstance(node, ast.IndexStmt):
        return [(node.idxname, None)]
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_INDEX:
        return [(node.newname, node.relation)]
    return []


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        yield from misnamed(stmt, "index", _index_names(stmt.node), ctx.options["pattern"])


RULE = Rule(
    "naming.index",
    304,
    Level.WARNING,
    __doc__,
    check,
    BAD,
    GOOD,
    default_options={"pattern": "^(idx|uk)_[a-z0-9_]+$"},
)
