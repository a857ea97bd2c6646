"""ADD PRIMARY KEY or UNIQUE constraint to an existing table without USING INDEX.

The constraint builds its index while holding an ACCESS EXCLUSIVE lock, blocking all reads
and writes for the whole build. Build the unique index CONCURRENTLY first, then attach it with
ADD CONSTRAINT ... USING INDEX, which is instant.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import existing_table_alters

BAD = [
    "ALTER TABLE orders ADD CONSTRAINT uk_orders_ref UNIQUE (ref)",
    "ALTER TABLE orders ADD PRIMARY KEY (id)",
]
GOOD = [
    "CREATE UNIQUE INDEX CONCURRENTLY uk_orders_ref ON orders (ref); "
    "ALTER TABLE orders ADD CONSTRAINT uk_orders_ref UNIQUE USING INDEX uk_orders_ref",
    "CREATE TABLE t (id bigint, ref text); ALTER TABLE t ADD PRIMARY KEY (id), ADD UNIQUE (ref)",
]

_KINDS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE"}


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in existing_table_alters(ctx.script):
        if cmd.subtype != AlterTableType.AT_AddConstraint or cmd.def_.contype not in _KINDS:
            continue
        if cmd.def_.indexname is None:
            kind = _KINDS[cmd.def_.contype]
            index = cmd.def_.conname or f"{'pk' if kind == 'PRIMARY KEY' else 'uk'}_{table}"
            yield Finding(
                f'Adding a {kind} constraint to "{table}" builds its index while holding an ACCESS EXCLUSIVE '
                "lock, blocking all reads and writes for the whole build. First CREATE UNIQUE INDEX "
                f"CONCURRENTLY {index} ON {table} (...), then ALTER TABLE {table} ADD CONSTRAINT {index} {kind} "
                f"USING INDEX {index}, which is instant.",
                stmt.at(cmd.def_),
            )


RULE = Rule("index.unique-constraint-require-index", 804, Level.WARNING, __doc__, check, BAD, GOOD)
