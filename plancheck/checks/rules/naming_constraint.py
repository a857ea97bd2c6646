"""Constraint names given in CREATE TABLE or ALTER TABLE (CONSTRAINT name ..., RENAME CONSTRAINT)
that do not match the `pattern` option (default: lower case letters, digits and underscores,
starting with a letter, which PostgreSQL's generated names such as orders_pkey, orders_ref_key,
items_order_id_fkey and orders_total_check satisfy), or, when the project sets one, differ from
the name a template builds from the table and columns: `primary_key_template`, `unique_template`,
`foreign_key_template` (which may also use {ref_table} and {ref_columns}) and `check_template`.
Unnamed constraints get PostgreSQL's generated names and are not checked.

Constraint names appear in every violation error the application logs and reports; names that
say which table and columns they guard make those errors readable without a catalog lookup.

Fix: name the constraint to match the pattern (or its template).
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ConstrType, ObjectType

from plancheck.checks.rules.base import Finding, Level, Named, Rule, RuleContext, misnamed
from plancheck.checks.rules.script import Statement, constraints, last_field, relation_name, walk

BAD = [
    'CREATE TABLE orders (id bigint CONSTRAINT "PK_Orders" PRIMARY KEY)',
    'ALTER TABLE items ADD CONSTRAINT "FK items order" FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID',
    'ALTER TABLE orders RENAME CONSTRAINT orders_total_check TO "TotalCheck"',
]
GOOD = [
    "CREATE TABLE orders (id bigint CONSTRAINT orders_pkey PRIMARY KEY, total numeric CHECK (total >= 0))",
    "ALTER TABLE items ADD CONSTRAINT items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID",
    "ALTER TABLE orders ADD CONSTRAINT uk_orders_ref UNIQUE USING INDEX uk_orders_ref",
]

_TEMPLATES = {
    ConstrType.CONSTR_PRIMARY: "primary_key_template",
    ConstrType.CONSTR_UNIQUE: "unique_template",
    ConstrType.CONSTR_FOREIGN: "foreign_key_template",
    ConstrType.CONSTR_CHECK: "check_template",
}


def _names(values: tuple[ast.Node, ...] | None) -> tuple[str, ...]:
    return tuple(getattr(value, "sval", "") for value in values or ())


def _columns(constraint: ast.Constraint, column: str | None) -> tuple[str, ...]:
    """The columns PostgreSQL builds a generated name from: the key's, or a CHECK's only column."""
    if column is not None:
        return (column,)
    if constraint.contype == ConstrType.CONSTR_FOREIGN:
        return _names(constraint.fk_attrs)
    if constraint.contype == ConstrType.CONSTR_CHECK:
        fields = (last_field(ref) for ref in walk(constraint.raw_expr) if isinstance(ref, ast.ColumnRef))
        referenced = {field.sval for field in fields if isinstance(field, ast.String) and field.sval}
        return tuple(referenced) if len(referenced) == 1 else ()
    return _names(constraint.keys)


def _named(ctx: RuleContext, constraint: ast.Constraint, table: str | None, column: str | None) -> Named:
    option = _TEMPLATES.get(constraint.contype) if constraint.contype is not None else None
    if option is None or constraint.indexname is not None:  # USING INDEX: the columns are the index's
        return Named(constraint.conname, constraint)
    return Named(
        constraint.conname,
        constraint,
        ctx.options[option],
        table,
        _columns(constraint, column),
        relation_name(constraint.pktable) or "",
        _names(constraint.pk_attrs),
    )


def _constraint_names(ctx: RuleContext, stmt: Statement) -> Iterator[Named]:
    if isinstance(stmt.node, ast.RenameStmt):
        if stmt.node.renameType == ObjectType.OBJECT_TABCONSTRAINT:
            yield Named(stmt.node.newname, stmt.node.relation)
        return
    table = relation_name(getattr(stmt.node, "relation", None))
    owners = {
        id(constraint): column.colname for column in stmt.find(ast.ColumnDef) for constraint in constraints(column)
    }
    for constraint in stmt.find(ast.Constraint):
        if constraint.conname is not None:
            yield _named(ctx, constraint, table, owners.get(id(constraint)))


def check(ctx: RuleContext) -> Iterator[Finding]:
    """Only statements that name a constraint are read (most constraints are left unnamed)."""
    naming = {stmt.ordinal: stmt for stmt, constraint in ctx.script.find(ast.Constraint) if constraint.conname}
    naming |= {stmt.ordinal: stmt for stmt, _ in ctx.script.top(ast.RenameStmt)}
    statements = [
        naming[ordinal]
        for ordinal in sorted(naming)
        if isinstance(naming[ordinal].node, (ast.CreateStmt, ast.AlterTableStmt, ast.RenameStmt))
    ]
    names = ((stmt, name) for stmt in statements for name in _constraint_names(ctx, stmt))
    yield from misnamed("constraint", names, ctx.options["pattern"])


RULE = Rule(
    "naming.constraint",
    305,
    Level.WARNING,
    __doc__,
    check,
    BAD,
    GOOD,
    default_options={"pattern": "^[a-z][a-z0-9_]*$", **dict.fromkeys(_TEMPLATES.values(), "")},
)
