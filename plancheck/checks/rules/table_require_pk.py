"""CREATE TABLE without a primary key (none in the statement nor added later in the script).
Temporary tables, partitions (which inherit the parent's key) and CREATE TABLE ... (LIKE ...) are
exempt.

Without one, rows cannot be identified reliably: logical replication cannot replicate UPDATE and
DELETE, tools and ORMs cannot address single rows, and duplicates creep in.

Fix: add one, e.g. id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Script, Statement, altered_table, relation_key

BAD = [
    "CREATE TABLE audit_log (message text)",
    "CREATE TABLE accounts (id bigint UNIQUE NOT NULL)",
    "CREATE TABLE a (id bigint); ALTER TABLE b ADD PRIMARY KEY (id)",
]
GOOD = [
    "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
    "CREATE TABLE accounts (tenant bigint, id bigint, PRIMARY KEY (tenant, id))",
    "CREATE TABLE accounts (id bigint); ALTER TABLE accounts ADD PRIMARY KEY (id)",
    "CREATE TEMP TABLE scratch (v int)",
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
]


def _has_primary_key(stmt: Statement) -> bool:
    return any(c.contype == ConstrType.CONSTR_PRIMARY for c in stmt.find(ast.Constraint))


def _keyed_later(script: Script) -> set[str]:
    """Tables that get a primary key from an ALTER TABLE in the script."""
    return {
        table for stmt, _ in script.top(ast.AlterTableStmt) if (table := altered_table(stmt)) and _has_primary_key(stmt)
    }


def _exempt(node: ast.CreateStmt) -> bool:
    likes = any(isinstance(element, ast.TableLikeClause) for element in node.tableElts or ())
    temporary = node.relation is not None and node.relation.relpersistence == "t"
    return temporary or node.partbound is not None or likes


def check(ctx: RuleContext) -> Iterator[Finding]:
    keyed_later = _keyed_later(ctx.script)
    for stmt, node in ctx.script.top(ast.CreateStmt):
        if _exempt(node) or _has_primary_key(stmt):
            continue
        table = relation_key(node.relation)
        if table not in keyed_later:
            yield Finding(
                f'Table "{table}" has no primary key: logical replication cannot replicate its UPDATEs and '
                "DELETEs, tools and ORMs cannot address a single row, and duplicate rows creep in. Add one, "
                "e.g. id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, or a PRIMARY KEY over the natural key.",
                stmt.at(node.relation),
            )


RULE = Rule("table.require-pk", 601, Level.WARNING, __doc__, check, BAD, GOOD)
