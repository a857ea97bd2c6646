"""A BEGIN (or START TRANSACTION) that no COMMIT, ROLLBACK or END closes before the script ends.

What happens to the open transaction depends on how the script is run: a client that
disconnects rolls it back and silently loses the whole migration, and a tool that keeps the
connection holds every lock the script took until someone notices.

Fix: end the transaction in the script (COMMIT), or leave out the BEGIN and let the rollout
manage the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import opens_transaction

BAD = [
    "BEGIN;\nALTER TABLE orders ADD COLUMN note text;",
    "BEGIN; COMMIT; START TRANSACTION; UPDATE orders SET note = '' WHERE id = 1;",
]
GOOD = [
    "BEGIN; ALTER TABLE orders ADD COLUMN note text; COMMIT;",
    "ALTER TABLE orders ADD COLUMN note text;",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.script.ends_in_transaction:
        return
    begins = [
        stmt
        for stmt, node in ctx.script.top(ast.TransactionStmt)
        if opens_transaction(node) and not stmt.in_transaction
    ]
    if begins:
        yield Finding(
            "This BEGIN is never closed: no COMMIT, ROLLBACK or END follows before the script ends. A client "
            "that disconnects rolls the transaction back and silently loses the whole migration, and one that "
            "keeps the connection holds every lock the script took. End the transaction with COMMIT, or leave "
            "out the BEGIN and let the rollout manage the transaction.",
            begins[-1].at(),
        )


RULE = Rule("statement.begin-without-commit", 213, Level.WARNING, __doc__, check, BAD, GOOD)
