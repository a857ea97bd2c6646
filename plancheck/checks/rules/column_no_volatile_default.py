"""ADD COLUMN on an existing table with a value computed per row: a DEFAULT calling a VOLATILE
function (gen_random_uuid(), clock_timestamp(), nextval(), ...), a serial type, GENERATED ...
AS IDENTITY or GENERATED ALWAYS AS (...) STORED. Volatility comes from the target's catalog
(pg_proc.provolatile) when a target is at hand, else from a built-in table of PostgreSQL's
functions; the `volatile_functions` option names more functions to treat as volatile.

PostgreSQL 11+ adds a column with a constant or stable default (now() is stable) instantly, but
a per-row value forces a rewrite of the whole table and its indexes under an ACCESS EXCLUSIVE
lock.

Fix: add the column without it, SET DEFAULT for new rows, and backfill existing rows in batches.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import SERIAL_TYPES, Statement, last_name, type_name, walk
from plancheck.checks.rules.volatility import is_volatile

BAD = [
    "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE orders ADD COLUMN seen_at timestamptz NOT NULL DEFAULT clock_timestamp()",
    "ALTER TABLE orders ADD COLUMN bucket int DEFAULT (random() * 100)::int",
    "ALTER TABLE orders ADD COLUMN ref bigint DEFAULT nextval('orders_ref_seq')",
    "ALTER TABLE orders ADD COLUMN seq bigserial",
    "ALTER TABLE orders ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE orders ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100) STORED",
    "CREATE FUNCTION make_code() RETURNS text LANGUAGE sql AS $$ SELECT md5(random()::text) $$;\n"
    "ALTER TABLE orders ADD COLUMN code text DEFAULT make_code()",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT now()",
    "ALTER TABLE orders ADD COLUMN flag boolean NOT NULL DEFAULT false",
    "ALTER TABLE orders ADD COLUMN tags text[] DEFAULT '{}', ADD COLUMN day date DEFAULT CURRENT_DATE",
    "ALTER TABLE orders ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100) VIRTUAL",
    "CREATE TABLE t (id bigint PRIMARY KEY); ALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid()",
    "CREATE TABLE t (id uuid PRIMARY KEY DEFAULT gen_random_uuid())",
    "CREATE FUNCTION region() RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'eu' $$;\n"
    "ALTER TABLE orders ADD COLUMN region text DEFAULT region()",
]

_PER_ROW = {
    ConstrType.CONSTR_IDENTITY: "GENERATED AS IDENTITY",
    ConstrType.CONSTR_GENERATED: "a STORED generated value",
}


def _per_row_value(ctx: RuleContext, stmt: Statement, column: ast.ColumnDef) -> tuple[str, ast.Node] | None:
    """What makes the column's value differ per row, and where it is."""
    if type_name(column) in SERIAL_TYPES:
        return f"type {type_name(column)}", column
    for constraint in column.constraints or ():
        if constraint.contype in _PER_ROW and constraint.generated_kind != "v":  # VIRTUAL: computed when read
            return _PER_ROW[constraint.contype], constraint
        if constraint.contype == ConstrType.CONSTR_DEFAULT:
            call = _volatile_call(ctx, stmt, constraint.raw_expr)
            if call is not None:
                return f"DEFAULT {last_name(call.funcname)}(), a VOLATILE function,", call
    return None


def _volatile_call(ctx: RuleContext, stmt: Statement, expression: ast.Node | None) -> ast.FuncCall | None:
    also = ctx.options["volatile_functions"]
    calls = (node for node in walk(expression) if isinstance(node, ast.FuncCall))
    return next(
        (call for call in calls if is_volatile(ctx.script, stmt.ordinal, call, ctx.function_volatility, also)), None
    )


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in ctx.script.existing_alters:
        if cmd.subtype != AlterTableType.AT_AddColumn or not isinstance(cmd.def_, ast.ColumnDef):
            continue
        found = _per_row_value(ctx, stmt, cmd.def_)
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
    default_options={"volatile_functions": []},
)
