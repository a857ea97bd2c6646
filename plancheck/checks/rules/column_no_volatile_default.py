"""ADD COLUMN on an existing table with a value computed per row: a volatile DEFAULT
(gen_random_uuid(), random(), clock_timestamp(), nextval(), ...: the `volatile_functions`
option), a serial type or GENERATED ... AS IDENTITY.

PostgreSQL 11+ adds a column with a constant or stable default (now() is stable) instantly,
but a per-row value forces a rewrite of the whole table and its indexes under an ACCESS
EXCLUSIVE lock. Add the column without it, SET DEFAULT for new rows, backfill in batches.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import SERIAL_TYPES, existing_table_alters, last_name, walk

BAD = [
    "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE orders ADD COLUMN seen_at timestamptz NOT NULL DEFAULT clock_timestamp()",
    "ALTER TABLE orders ADD COLUMN bucket int DEFAULT (random() * 100)::int",
    "ALTER TABLE orders ADD COLUMN seq bigserial",
    "ALTER TABLE orders ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT now()",
    "ALTER TABLE orders ADD COLUMN flag boolean NOT NULL DEFAULT false",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid()",
    "CREATE TABLE t (id uuid PRIMARY KEY DEFAULT gen_random_uuid())",
]

_VOLATILE_FUNCTIONS = [
    "clock_timestamp",
    "gen_random_uuid",
    "nextval",
    "random",
    "random_normal",
    "timeofday",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
]


def _per_row_value(column: ast.ColumnDef, functions: set[str]) -> tuple[str, ast.Node] | None:
    """What makes the column's value differ per row, and where it is."""
    if last_name(column.typeName.names) in SERIAL_TYPES:
        return f"type {last_name(column.typeName.names)}", column
    for constraint in column.constraints or ():
        if constraint.contype == ConstrType.CONSTR_IDENTITY:
            return "GENERATED AS IDENTITY", constraint
        if constraint.contype == ConstrType.CONSTR_DEFAULT:
            for node in walk(constraint.raw_expr):
                if isinstance(node, ast.FuncCall) and last_name(node.funcname) in functions:
                    return f"DEFAULT {last_name(node.funcname)}()", node
    return None


def check(ctx: RuleContext) -> Iterator[Finding]:
    functions = set(ctx.options["volatile_functions"])
    for stmt, table, cmd in existing_table_alters(ctx.script):
        if cmd.subtype != AlterTableType.AT_AddColumn:
            continue
        found = _per_row_value(cmd.def_, functions)
        if found:
            what, node = found
            yield Finding(
                f'Adding column "{cmd.def_.colname}" to "{table}" with {what} rewrites the whole table and all '
                "its indexes under an ACCESS EXCLUSIVE lock, because a value must be computed and stored for "
                "every existing row (constant and stable defaults such as now() are instant since PostgreSQL "
                "11). Add the column without it, then ALTER COLUMN ... SET DEFAULT for new rows, and backfill "
                "existing rows in batches.",
                stmt.at(node),
            )


RULE = Rule(
    "column.no-volatile-default",
    402,
    Level.WARNING,
    __doc__,
    check,
    BAD,
    GOOD,
    default_options={"volatile_functions": _VOLATILE_FUNCTIONS},
)
