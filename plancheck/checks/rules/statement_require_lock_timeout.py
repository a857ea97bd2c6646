"""Strong locks on existing tables taken before any SET lock_timeout: ALTER TABLE, CREATE INDEX
without CONCURRENTLY, DROP, TRUNCATE, RENAME, LOCK, CREATE TRIGGER and foreign keys to existing
tables.

They wait for conflicting locks. Without lock_timeout a single long query makes the migration
wait indefinitely while every query on the table queues behind it: an outage.

Fix: start the script with SET lock_timeout (SET LOCAL inside BEGIN) and retry when it times out.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import (
    Script,
    Statement,
    alter_commands,
    altered_table,
    items,
    names_key,
    relation_key,
)

BAD = [
    "ALTER TABLE orders ADD COLUMN note text",
    "CREATE INDEX idx_orders_status ON orders (status)",
    "SET lock_timeout = '5s'; RESET lock_timeout; DROP TABLE orders",
    "BEGIN; SET LOCAL lock_timeout = '5s'; COMMIT; TRUNCATE orders",
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id))",
    "ALTER TABLE orders ADD COLUMN note text; SET lock_timeout = '5s'",
]
GOOD = [
    "SET lock_timeout = '5s'; ALTER TABLE orders ADD COLUMN note text",
    "BEGIN; SET LOCAL lock_timeout = '3s'; ALTER TABLE orders ADD COLUMN note text; COMMIT;",
    "CREATE INDEX CONCURRENTLY idx_orders_status ON orders (status)",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN a int; CREATE INDEX idx_t_a ON t (a)",
    "ALTER TABLE orders VALIDATE CONSTRAINT chk_total",
]

# The statements _locked_tables looks at.
_LOCKING = frozenset(
    {
        ast.AlterTableStmt,
        ast.IndexStmt,
        ast.DropStmt,
        ast.TruncateStmt,
        ast.LockStmt,
        ast.RenameStmt,
        ast.CreateTrigStmt,
        ast.CreateStmt,
    }
)
_RELATIONS = {ObjectType.OBJECT_TABLE, ObjectType.OBJECT_INDEX, ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW}


def _locked_tables(script: Script, stmt: Statement) -> list[str]:
    """Keys of the existing relations stmt takes a lock on that blocks writes (or more)."""
    node = stmt.node
    table = altered_table(stmt)
    if table is not None:
        validate_only = all(cmd.subtype == AlterTableType.AT_ValidateConstraint for cmd in alter_commands(node))
        keys = [] if validate_only else [table]
    elif isinstance(node, ast.IndexStmt):
        keys = [] if node.concurrent else [relation_key(node.relation)]
    elif isinstance(node, ast.DropStmt) and node.removeType in _RELATIONS:
        keys = [] if node.concurrent else [names_key(names) for names in items(node.objects)]
    elif isinstance(node, (ast.TruncateStmt, ast.LockStmt)):
        keys = [relation_key(relation) for relation in items(node.relations)]
    elif isinstance(node, (ast.RenameStmt, ast.CreateTrigStmt)) and node.relation is not None:
        keys = [relation_key(node.relation)]
    elif isinstance(node, ast.CreateStmt):
        fks = (c for c in stmt.find(ast.Constraint) if c.contype == ConstrType.CONSTR_FOREIGN)
        keys = [relation_key(fk.pktable) for fk in fks]
    else:
        keys = []
    return [key for key in keys if not script.is_new(key, stmt)]


def check(ctx: RuleContext) -> Iterator[Finding]:
    unprotected = [
        (stmt, tables)
        for stmt in ctx.script.statements
        if not stmt.lock_timeout and type(stmt.node) in _LOCKING and (tables := _locked_tables(ctx.script, stmt))
    ]
    if unprotected:
        stmt, tables = unprotected[0]
        later = len(unprotected) - 1
        more = f" (and {later} later statement{'s' if later > 1 else ''} lock tables too)" if later else ""
        yield Finding(
            f'This statement locks "{tables[0]}"{more} with no lock_timeout set: if any long-running query '
            "holds a conflicting lock, the migration waits indefinitely and every other query on the table "
            "queues behind it, which looks like an outage. Put SET lock_timeout = '5s' (SET LOCAL inside "
            "BEGIN ... COMMIT) before the first such statement and retry the migration when it times out.",
            stmt.at(),
        )


RULE = Rule("statement.require-lock-timeout", 210, Level.WARNING, __doc__, check, BAD, GOOD)
