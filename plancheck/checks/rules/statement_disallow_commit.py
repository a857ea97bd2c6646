"""COMMIT, ROLLBACK (or END, ABORT, the PREPARED forms) inside a migration.

The rollout decides how the script runs in transactions. An explicit COMMIT makes everything
before it permanent even if a later statement fails, leaving the database half-migrated, and
ROLLBACK silently discards work.

Fix: remove it; split the change into separate plans if it needs several transactions.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import TransactionStmtKind as Kind

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext

BAD = [
    "COMMIT",
    "BEGIN; UPDATE orders SET status = 'done' WHERE id = 1; COMMIT;",
    "ROLLBACK",
    "END",
]
GOOD = [
    "BEGIN",
    "SAVEPOINT before_fix; ROLLBACK TO SAVEPOINT before_fix",
    "UPDATE orders SET status = 'done' WHERE id = 1",
]

_ENDS = {
    Kind.TRANS_STMT_COMMIT,
    Kind.TRANS_STMT_ROLLBACK,
    Kind.TRANS_STMT_PREPARE,
    Kind.TRANS_STMT_COMMIT_PREPARED,
    Kind.TRANS_STMT_ROLLBACK_PREPARED,
}


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, transaction in ctx.script.top(ast.TransactionStmt):
        if transaction.kind in _ENDS:
            verb = stmt.sql.split(None, 1)[0].upper()
            yield Finding(
                f"{verb} in a migration takes transaction control away from the rollout: statements before it "
                "become permanent even if a later one fails, leaving the database half-migrated, and the rest "
                "runs outside the transaction the rollout expects. Remove it and let the rollout manage the "
                "transaction; split the change into separate plans if it needs several transactions.",
                stmt.at(),
            )


RULE = Rule("statement.disallow-commit", 205, Level.ERROR, __doc__, check, BAD, GOOD)
