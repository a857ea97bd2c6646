"""CASCADE on DROP, TRUNCATE or ALTER TABLE ... DROP.

CASCADE also drops (or empties) every dependent object - views, foreign keys, rows of other
tables - none of which appear in the script, so reviewers cannot see what will be lost.

Fix: drop dependents explicitly and keep the default RESTRICT so anything unexpected stops the
migration.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import DropBehavior

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext

BAD = [
    "DROP TABLE orders CASCADE",
    "ALTER TABLE orders DROP COLUMN note CASCADE",
    "TRUNCATE orders CASCADE",
    "DROP SCHEMA legacy CASCADE",
]
GOOD = [
    "DROP TABLE orders",
    "DROP TABLE orders RESTRICT",
    "ALTER TABLE orders DROP COLUMN note",
]

_WITH_BEHAVIOR = (ast.DropStmt, ast.TruncateStmt, ast.AlterTableCmd, ast.AlterDomainStmt, ast.DropOwnedStmt)


def check(ctx: RuleContext) -> Iterator[Finding]:
    cascading = {
        stmt.ordinal: stmt
        for kind in _WITH_BEHAVIOR
        for stmt, node in ctx.script.find(kind)
        if getattr(node, "behavior", None) == DropBehavior.DROP_CASCADE
    }
    for stmt in (cascading[ordinal] for ordinal in sorted(cascading)):
        yield Finding(
            "CASCADE also drops or empties every object that depends on the target - views, foreign keys, "
            "rows of referencing tables - none of which are visible in the script, so the review cannot "
            "see what will be lost. Drop the dependent objects explicitly first and leave out CASCADE "
            "(RESTRICT is the default), so anything unexpected stops the migration.",
            stmt.at(),
        )


RULE = Rule("statement.disallow-cascade", 207, Level.ERROR, __doc__, check, BAD, GOOD)
