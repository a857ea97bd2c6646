"""Index names (CREATE INDEX, ALTER INDEX ... RENAME TO) that do not match the `pattern` option
(default: lower case letters, digits and underscores, starting with a letter, which PostgreSQL's
own generated names such as orders_status_idx satisfy), or, when the project sets one, differ from
the name the `template` option (`unique_template` for unique indexes) builds from the table and the
indexed columns: e.g. "idx_{table}_{columns}" or "{table}_{columns}_idx". Unnamed indexes get
PostgreSQL's generated names and are not checked.

A recognisable name tells an index apart from other relations in plans, logs and error messages,
and says what it covers.

Fix: name the index to match the pattern (or its template).
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from plancheck.checks.rules.base import Finding, Level, Named, Rule, RuleContext, misnamed
from plancheck.checks.rules.script import relation_name

BAD = [
    'CREATE INDEX "OrdersStatus" ON orders (status)',
    "CREATE UNIQUE INDEX CONCURRENTLY IdxOrders$Ref ON orders (ref)",
    'ALTER INDEX idx_orders_status RENAME TO "Orders status"',
]
GOOD = [
    "CREATE INDEX idx_orders_status ON orders (status)",
    "CREATE INDEX orders_status_created_at_idx ON orders (status, created_at)",
    "CREATE UNIQUE INDEX orders_ref_key ON orders (ref)",
    "CREATE INDEX ON orders (status)",
]


def _index_names(node: ast.Node, template: str, unique_template: str) -> list[Named]:
    if isinstance(node, ast.IndexStmt):
        columns = tuple(param.name or "expr" for param in node.indexParams or () if isinstance(param, ast.IndexElem))
        chosen = (unique_template or template) if node.unique else template
        return [Named(node.idxname, None, chosen, relation_name(node.relation), columns)]
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_INDEX:
        return [Named(node.newname, node.relation)]
    return []


def check(ctx: RuleContext) -> Iterator[Finding]:
    template, unique_template = ctx.options["template"], ctx.options["unique_template"]
    names = (
        (stmt, named)
        for stmt, node in ctx.script.top_of(ast.IndexStmt, ast.RenameStmt)
        for named in _index_names(node, template, unique_template)
    )
    yield from misnamed("index", names, ctx.options["pattern"])


RULE = Rule(
    "naming.index",
    304,
    Level.WARNING,
    __doc__,
    check,
    BAD,
    GOOD,
    default_options={"pattern": "^[a-z][a-z0-9_]*$", "template": "", "unique_template": ""},
)
