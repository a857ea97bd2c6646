"""LOCK TABLE in a mode that blocks writes (SHARE and stronger; the default is ACCESS EXCLUSIVE)
on a table the script did not create.

An explicit lock is held until the transaction ends: every write (and, for ACCESS EXCLUSIVE,
every read) of the table queues behind it for the rest of the migration, and the LOCK itself
waits behind every running query first.

Fix: drop the LOCK and rely on the locks the statements take themselves; if the data really must
be frozen, take the weakest mode that does it, with SET lock_timeout, right before the statement
that needs it.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "LOCK TABLE orders",
    "BEGIN;\nLOCK TABLE orders, items IN SHARE ROW EXCLUSIVE MODE;\nCOMMIT;",
]
GOOD = [
    "LOCK TABLE orders IN ROW EXCLUSIVE MODE",
    "CREATE TABLE staging (id bigint PRIMARY KEY); LOCK TABLE staging",
]

_MODES = {5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}  # lockdefs.h


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, lock in ctx.script.top(ast.LockStmt):
        mode = _MODES.get(lock.mode or 0)
        tables = [relation_key(relation) for relation in lock.relations or ()]
        existing = [table for table in tables if not ctx.script.is_new(table, stmt)]
        if mode and existing:
            blocked = "every read and write" if mode == "ACCESS EXCLUSIVE" else "every write"
            yield Finding(
                f'LOCK TABLE "{existing[0]}" IN {mode} MODE blocks {blocked} of the table until the transaction '
                "ends, and first waits behind every running query on it. Leave the locking to the statements "
                "that need it; if the data must be frozen, take the weakest mode that does it, with SET "
                "lock_timeout, right before the statement that needs it.",
                stmt.at(),
            )


RULE = Rule("statement.disallow-lock-table", 211, Level.WARNING, __doc__, check, BAD, GOOD)
