"""Primary keys of type integer or smallint (int, int2, int4, serial, smallserial), as a column
constraint or over a column the same CREATE TABLE defines.

An integer key runs out at 2,147,483,647 (smallint at 32,767): inserts start failing one day,
and widening the key then rewrites the table and every referencing foreign key under ACCESS
EXCLUSIVE locks, at the worst possible time. bigint costs 4 more bytes per row.

Fix: use bigint (bigint GENERATED ALWAYS AS IDENTITY for a surrogate key).
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Statement, constraints, items, type_name

BAD = [
    "CREATE TABLE orders (id integer PRIMARY KEY)",
    "CREATE TABLE orders (id serial PRIMARY KEY, note text)",
    "CREATE TABLE order_lines (order_id bigint, line smallint, PRIMARY KEY (order_id, line))",
]
GOOD = [
    "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, quantity integer)",
    "CREATE TABLE orders (id uuid PRIMARY KEY)",
    "CREATE TABLE order_lines (order_id bigint, line bigint, PRIMARY KEY (order_id, line))",
]

_SMALL = {
    "int2": "smallint",
    "int4": "integer",
    "serial": "serial",
    "serial2": "smallserial",
    "serial4": "serial",
    "smallserial": "smallserial",
}


def _key_columns(stmt: Statement, table: ast.CreateStmt) -> Iterator[ast.ColumnDef]:
    """The columns of the primary keys a CREATE TABLE defines."""
    columns = {column.colname: column for column in stmt.find(ast.ColumnDef)}
    for column in columns.values():
        if any(c.contype == ConstrType.CONSTR_PRIMARY for c in constraints(column)):
            yield column
    for element in items(table.tableElts):
        if isinstance(element, ast.Constraint) and element.contype == ConstrType.CONSTR_PRIMARY:
            names = (getattr(key, "sval", None) for key in items(element.keys))
            yield from (columns[name] for name in names if name in columns)


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table in ctx.script.top(ast.CreateStmt):
        for column in _key_columns(stmt, table):
            small = _SMALL.get(type_name(column))
            if small:
                limit = "32,767" if "small" in small else "2,147,483,647"
                yield Finding(
                    f'Primary key column "{column.colname}" is {small}: it runs out at {limit}, and widening it '
                    "then rewrites the table and every referencing foreign key under ACCESS EXCLUSIVE locks. "
                    "Use bigint (bigint GENERATED ALWAYS AS IDENTITY for a surrogate key); it costs 4 more "
                    "bytes per row.",
                    stmt.at(column),
                )


RULE = Rule("column.type-disallow-int-primary-key", 407, Level.WARNING, __doc__, check, BAD, GOOD)
