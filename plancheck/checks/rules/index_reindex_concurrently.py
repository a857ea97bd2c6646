"""REINDEX without CONCURRENTLY (of an index, table, schema or database the script did not create).

A plain REINDEX locks out writes to the table for the whole rebuild, and any query that would use
the index being rebuilt blocks too (it holds an ACCESS EXCLUSIVE lock on the index).

Fix: REINDEX ... CONCURRENTLY (PostgreSQL 12+, outside a transaction block); if it fails, drop
the invalid index it leaves behind (its name ends in _ccnew) and retry.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ReindexObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import reindex_concurrently, relation_key

BAD = [
    "REINDEX INDEX idx_orders_status",
    "REINDEX TABLE orders",
    "REINDEX (VERBOSE) DATABASE shop",
]
GOOD = [
    "REINDEX INDEX CONCURRENTLY idx_orders_status",
    "REINDEX (CONCURRENTLY, VERBOSE) TABLE orders",
    "CREATE TABLE t (id bigint PRIMARY KEY); REINDEX TABLE t",
]

_KINDS = {
    ReindexObjectType.REINDEX_OBJECT_INDEX: "INDEX",
    ReindexObjectType.REINDEX_OBJECT_TABLE: "TABLE",
    ReindexObjectType.REINDEX_OBJECT_SCHEMA: "SCHEMA",
    ReindexObjectType.REINDEX_OBJECT_SYSTEM: "SYSTEM",
    ReindexObjectType.REINDEX_OBJECT_DATABASE: "DATABASE",
}


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, reindex in ctx.script.top(ast.ReindexStmt):
        if reindex_concurrently(reindex):
            continue
        name = relation_key(reindex.relation) if reindex.relation is not None else reindex.name or ""
        if reindex.relation is not None and ctx.script.is_new(name, stmt):
            continue
        kind = _KINDS.get(reindex.kind, "") if reindex.kind is not None else ""
        yield Finding(
            f'REINDEX {kind} "{name}" without CONCURRENTLY blocks writes to the table for the whole rebuild, and '
            "queries that would use the index being rebuilt block too. Use REINDEX ... CONCURRENTLY "
            "(PostgreSQL 12+, outside a transaction block); if it fails, drop the invalid index it leaves "
            "(named ..._ccnew) and retry.",
            stmt.at(),
        )


RULE = Rule("index.reindex-concurrently", 805, Level.WARNING, __doc__, check, BAD, GOOD)
