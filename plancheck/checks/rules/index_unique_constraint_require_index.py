"""ADD PRIMARY KEY or UNIQUE to an existing table without USING INDEX: as a table constraint (ADD
CONSTRAINT ... UNIQUE (...), ADD PRIMARY KEY (...)) or on a column added by the same statement
(ADD COLUMN ... UNIQUE).

The constraint builds its index while holding an ACCESS EXCLUSIVE lock, blocking all reads and
writes for the whole build.

Fix: build the unique index with CREATE UNIQUE INDEX CONCURRENTLY first, then attach it with
ADD CONSTRAINT ... UNIQUE USING INDEX (or PRIMARY KEY USING INDEX), which is instant.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext

BAD = [
    "ALTER TABLE orders ADD CONSTRAINT uk_orders_ref UNIQUE (ref)",
    "ALTER TABLE orders ADD PRIMARY KEY (id)",
    "ALTER TABLE orders ADD COLUMN ref text UNIQUE",
]
GOOD = [
    "CREATE UNIQUE INDEX CONCURRENTLY uk_orders_ref ON orders (ref); "
    "ALTER TABLE orders ADD CONSTRAINT uk_orders_ref UNIQUE USING INDEX uk_orders_ref",
    "CREATE UNIQUE INDEX CONCURRENTLY orders_pkey ON orders (id); "
    "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_pkey",
    "CREATE TABLE t (id bigint, ref text); ALTER TABLE t ADD PRIMARY KEY (id), ADD UNIQUE (ref)",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN ref text UNIQUE",
]

_KINDS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE"}


def _index_building(cmd: ast.AlterTableCmd) -> list[ast.Constraint]:
    """The PRIMARY KEY / UNIQUE constraints of cmd that build a new index."""
    if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        constraints: tuple[ast.Constraint, ...] = (cmd.def_,)
    elif cmd.subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        constraints = cmd.def_.constraints or ()
    else:
        return []
    return [c for c in constraints if c.contype is not None and c.contype in _KINDS and c.indexname is None]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in ctx.script.existing_alters:
        for constraint in _index_building(cmd):
            kind = _KINDS[ConstrType(constraint.contype or 0)]
            index = constraint.conname or f"{table}_{'pkey' if kind == 'PRIMARY KEY' else 'key'}"
            yield Finding(
                f'Adding a {kind} constraint to "{table}" builds its index while holding an ACCESS EXCLUSIVE '
                "lock, blocking all reads and writes for the whole build. First CREATE UNIQUE INDEX "
                f"CONCURRENTLY {index} ON {table} (...), then ALTER TABLE {table} ADD CONSTRAINT {index} {kind} "
                f"USING INDEX {index}, which is instant.",
                stmt.at(constraint),
            )


RULE = Rule("index.unique-constraint-require-index", 804, Level.WARNING, __doc__, check, BAD, GOOD)
