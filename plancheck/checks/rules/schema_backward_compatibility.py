"""Changes that break code still using the old schema, on objects the script did not create: DROP
DATABASE/SCHEMA/TABLE/VIEW, DROP COLUMN, RENAME of a table, view or column, ALTER COLUMN ... DROP NOT NULL, and
ALTER COLUMN ... TYPE (except to text or varchar without USING, taken as the widening of a
varchar(n), which neither rewrites nor breaks readers).

During a rollout the previous application version keeps running against the new schema, and
jobs, reports and replicas use it too: they fail on a missing table or column, and code that
assumes a column is never NULL breaks on the first NULL.

Fix: use expand/contract: add the new shape, migrate readers and writers, and remove the old one
in a later release.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Statement, items, names_key, relation_key, type_name

BAD = [
    "DROP TABLE orders",
    "DROP VIEW order_totals",
    "DROP DATABASE shop",
    "DROP SCHEMA IF EXISTS legacy",
    "ALTER TABLE orders DROP COLUMN note",
    "ALTER TABLE orders RENAME TO purchases",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2)",
    "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL",
    "ALTER TABLE orders ALTER COLUMN code TYPE varchar(20) USING code::varchar(20)",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN remark text",
    "CREATE TABLE t (id bigint PRIMARY KEY, a int); ALTER TABLE t RENAME COLUMN a TO b; "
    "ALTER TABLE t ALTER COLUMN b TYPE bigint; ALTER TABLE t DROP COLUMN b; ALTER TABLE t RENAME TO u; DROP TABLE u",
    "DROP INDEX CONCURRENTLY idx_orders_status",
    "ALTER TABLE orders ALTER COLUMN email TYPE varchar(320), ALTER COLUMN note TYPE text",
]

_RELATION_KINDS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
}
_WIDE_TYPES = frozenset({"text", "varchar"})
_BREAKS = (
    "the application version still running during the rollout, and any job or report using the old "
    "schema, fails as soon as this runs."
)


def _dropped_containers(stmt: Statement) -> Iterator[Finding]:
    """DROP DATABASE and DROP SCHEMA: everything in them goes."""
    node = stmt.node
    if isinstance(node, ast.DropdbStmt):
        dropped = [f'DATABASE "{node.dbname}"']
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_SCHEMA:
        dropped = [f'SCHEMA "{getattr(name, "sval", name)}"' for name in node.objects or ()]
    else:
        return
    for what in dropped:
        yield Finding(
            f"DROP {what} is not backward compatible: {_BREAKS} Every table in it, and its data, is gone with it; "
            "stop all use of it first, and drop it in a reviewed maintenance plan with a backup at hand.",
            stmt.at(),
        )


def _dropped_relations(ctx: RuleContext, stmt: Statement) -> Iterator[Finding]:
    node = stmt.node
    if not isinstance(node, ast.DropStmt) or node.removeType not in _RELATION_KINDS:
        return
    kind = _RELATION_KINDS[node.removeType]
    for name in (names_key(names) for names in items(node.objects)):
        if not ctx.script.is_new(name, stmt):
            yield Finding(
                f'DROP {kind.upper()} "{name}" is not backward compatible: {_BREAKS} Stop all use of the {kind} '
                "in a release first, then drop it in a later migration (the data of a dropped table is only "
                "recoverable from a backup).",
                stmt.at(),
            )


def _renames(ctx: RuleContext, stmt: Statement) -> Iterator[Finding]:
    node = stmt.node
    if not isinstance(node, ast.RenameStmt) or node.relation is None:
        return
    table = relation_key(node.relation)
    if ctx.script.is_new(table, stmt):
        return
    if node.renameType == ObjectType.OBJECT_COLUMN:
        yield Finding(
            f'Renaming column "{node.subname}" of "{table}" to "{node.newname}" is not backward compatible: '
            f"{_BREAKS} Add the new column, write both and backfill, move readers over, and drop the old "
            "column in a later release.",
            stmt.at(node.relation),
        )
    elif node.renameType in _RELATION_KINDS:
        yield Finding(
            f'Renaming "{table}" to "{node.newname}" is not backward compatible: {_BREAKS} Rename it and create '
            f'a view named "{table}" over the new name until no code uses the old name.',
            stmt.at(node.relation),
        )


def _widening(cmd: ast.AlterTableCmd) -> bool:
    """ALTER COLUMN ... TYPE text / varchar / varchar(n) without USING: the widening of a varchar(n)."""
    column = cmd.def_
    return isinstance(column, ast.ColumnDef) and column.raw_default is None and type_name(column) in _WIDE_TYPES


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        yield from _dropped_containers(stmt)
        yield from _dropped_relations(ctx, stmt)
        yield from _renames(ctx, stmt)
    for stmt, table, cmd in ctx.script.existing_alters:
        if cmd.subtype == AlterTableType.AT_DropColumn:
            yield Finding(
                f'Dropping column "{cmd.name}" of "{table}" is not backward compatible: {_BREAKS} Release code '
                "that no longer reads or writes the column first, then drop it in a later migration.",
                stmt.at(),
            )
        elif cmd.subtype == AlterTableType.AT_DropNotNull:
            yield Finding(
                f'Dropping NOT NULL from column "{cmd.name}" of "{table}" is not backward compatible: the '
                "application version still running during the rollout, and every job or report reading the "
                "column, assumes it is never NULL and breaks on the first NULL row. Release code that handles "
                "NULL first, then drop the constraint in a later migration.",
                stmt.at(),
            )
        elif cmd.subtype == AlterTableType.AT_AlterColumnType and not _widening(cmd):
            yield Finding(
                f'Changing the type of column "{cmd.name}" of "{table}" is not backward compatible, and usually '
                "rewrites the table and its indexes under an ACCESS EXCLUSIVE lock. Add a column of the new "
                "type, write both and backfill in batches, switch readers, then drop the old column.",
                stmt.at(),
            )


RULE = Rule("schema.backward-compatibility", 901, Level.WARNING, __doc__, check, BAD, GOOD)
