"""VACUUM FULL (of named tables, or of every table of the database when none is named).

VACUUM FULL writes a complete new copy of each table and its indexes while holding an ACCESS
EXCLUSIVE lock: no read or write of the table gets through until the copy is done, which takes
minutes to hours on a large table and needs disk space for the copy.

Fix: leave space reclamation to autovacuum, or rebuild the table online with pg_repack (or
pg_squeeze) in a maintenance window.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import option_on, relation_key

BAD = [
    "VACUUM FULL orders",
    "VACUUM (FULL, ANALYZE) orders, items",
    "VACUUM FULL",
]
GOOD = [
    "VACUUM orders",
    "VACUUM (ANALYZE) orders",
    "VACUUM (FULL false) orders",
    "VACUUM (FULL 0) orders",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, vacuum in ctx.script.top(ast.VacuumStmt):
        if vacuum.is_vacuumcmd and option_on(vacuum.options, "full"):
            tables = [relation_key(rel.relation) for rel in vacuum.rels or () if rel.relation is not None]
            what = f'"{tables[0]}"' if tables else "every table of the database"
            yield Finding(
                f"VACUUM FULL rewrites {what} and its indexes into a new copy while holding an ACCESS EXCLUSIVE "
                "lock: no read or write gets through until the copy is done, minutes to hours on a large table, "
                "and the copy needs as much disk space again. Leave space reclamation to autovacuum, or rebuild "
                "the table online with pg_repack in a maintenance window.",
                stmt.at(),
            )


RULE = Rule("table.disallow-vacuum-full", 603, Level.WARNING, __doc__, check, BAD, GOOD)
