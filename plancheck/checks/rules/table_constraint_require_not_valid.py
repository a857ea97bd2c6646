"""CHECK or FOREIGN KEY constraint added to an existing table without NOT VALID (constraints on
tables created by the script are exempt), and CHECK constraints added to a domain without NOT VALID.

Validating the constraint scans the whole table while holding a lock that blocks writes (ACCESS
EXCLUSIVE for CHECK; SHARE ROW EXCLUSIVE on both tables for a foreign key); a domain's new CHECK
scans every column of every table that uses the domain, under the same kind of lock.

Fix: add it NOT VALID (enforced for new rows at once), then VALIDATE CONSTRAINT in a separate
statement, which lets reads and writes continue.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import constraint_of, last_name, relation_key

BAD = [
    "ALTER TABLE items ADD CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id)",
    "ALTER TABLE orders ADD CONSTRAINT chk_total CHECK (total >= 0)",
    "ALTER DOMAIN positive_amount ADD CONSTRAINT positive_amount_check CHECK (VALUE > 0)",
]
GOOD = [
    "ALTER TABLE items ADD CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID; "
    "ALTER TABLE items VALIDATE CONSTRAINT fk_items_order",
    "ALTER TABLE orders ADD CONSTRAINT chk_total CHECK (total >= 0) NOT VALID",
    "ALTER DOMAIN positive_amount ADD CONSTRAINT positive_amount_check CHECK (VALUE > 0) NOT VALID",
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint); "
    "ALTER TABLE items ADD CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id)",
]


def _lock(constraint: ast.Constraint, table: str) -> str:
    if constraint.contype == ConstrType.CONSTR_FOREIGN:
        return f'a SHARE ROW EXCLUSIVE lock on "{table}" and "{relation_key(constraint.pktable)}"'
    return f'an ACCESS EXCLUSIVE lock on "{table}"'


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in ctx.script.existing_alters:
        constraint = constraint_of(cmd)
        if (
            cmd.subtype == AlterTableType.AT_AddConstraint
            and constraint is not None
            and constraint.contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN)
            and not constraint.skip_validation
        ):
            kind = "CHECK" if constraint.contype == ConstrType.CONSTR_CHECK else "FOREIGN KEY"
            name = constraint.conname or "<name>"
            yield Finding(
                f'Adding {kind} constraint "{name}" to "{table}" without NOT VALID checks every existing row '
                f"while holding {_lock(constraint, table)}, blocking writes for the whole scan. Add it with NOT "
                f"VALID (new rows are checked at once), then run ALTER TABLE {table} VALIDATE CONSTRAINT {name} "
                "in a separate statement: validation lets reads and writes continue.",
                stmt.at(constraint),
            )
    for stmt, domain in ctx.script.top(ast.AlterDomainStmt):
        constraint = constraint_of(domain)
        if domain.subtype == "C" and constraint is not None and not constraint.skip_validation:
            name = constraint.conname or "<name>"
            yield Finding(
                f'Adding constraint "{name}" to domain "{last_name(domain.typeName)}" without NOT VALID checks '
                "every column of every table that uses the domain, blocking writes to those tables for the whole "
                f"scan. Add it with NOT VALID, then ALTER DOMAIN ... VALIDATE CONSTRAINT {name} separately.",
                stmt.at(constraint),
            )


RULE = Rule("table.constraint-require-not-valid", 602, Level.WARNING, __doc__, check, BAD, GOOD)
