"""BEGIN (or START TRANSACTION) while a transaction opened by an earlier BEGIN is still open.

PostgreSQL does not nest transactions: the second BEGIN only warns "there is already a
transaction in progress", and the first COMMIT after it commits everything since the first
BEGIN. Whoever wrote the inner block expects it to be atomic on its own, and it is not.

Fix: remove the inner BEGIN (and its COMMIT), or use SAVEPOINT and RELEASE for a block that may
be rolled back alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import opens_transaction

BAD = [
    "BEGIN;\nALTER TABLE orders ADD COLUMN note text;\nBEGIN;\nUPDATE orders SET note = '' WHERE id = 1;\nCOMMIT;",
    "START TRANSACTION; BEGIN; COMMIT;",
]
GOOD = [
    "BEGIN; ALTER TABLE orders ADD COLUMN note text; COMMIT; BEGIN; UPDATE orders SET note = '' WHERE id = 1; COMMIT;",
    "BEGIN; SAVEPOINT backfill; UPDATE orders SET note = '' WHERE id = 1; RELEASE SAVEPOINT backfill; COMMIT;",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, transaction in ctx.script.top(ast.TransactionStmt):
        if stmt.in_transaction and opens_transaction(transaction):
            yield Finding(
                "BEGIN inside a transaction that an earlier BEGIN opened does not start a nested transaction: "
                'PostgreSQL only warns "there is already a transaction in progress", and the next COMMIT '
                "commits everything since the first BEGIN, so the inner block is not atomic on its own. Remove "
                "the inner BEGIN and its COMMIT, or use SAVEPOINT ... RELEASE SAVEPOINT for a block that may "
                "be rolled back alone.",
                stmt.at(),
            )


RULE = Rule("statement.begin-inside-transaction", 212, Level.WARNING, __doc__, check, BAD, GOOD)
