"""Changes that break code still using the old schema: DROP TABLE/VIEW, DROP COLUMN, RENAME of a
table, view or column, and ALTER COLUMN ... TYPE, on objects the script did not create.

During a rollout the previous application version keeps running against the new schema, and
jobs, reports and replicas use it too. Use expand/contract: add the new shape, migrate readers
and writers, and remove the old one in a later release.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import Statement, existing_table_alters, names_key, relation_key

BAD = [
    "DROP TABLE orders",
    "DROP VIEW order_totals",
    "ALTER TABLE orders DROP COLUMN note",
    "ALTER TABLE orders RENAME TO purchases",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2)",
]
GOOD = [
    "ALTER TABLE orders ADD COLUMN remark text",
    "CREATE TABLE t (id bigint PRIMARY KEY, a int); ALTER TABLE t RENAME COLUMN a TO b; "
    "ALTER TABLE t ALTER COLUMN b TYPE bigint; ALTER TABLE t DROP COLUMN b; ALTER TABLE t RENAME TO u; DROP TABLE u",
    "DROP INDEX CONCURRENTLY idx_orders_status",
]

_RELATION_KINDS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
}
_BREAKS = (
    "the application version still running during the rollout, and any job or report using the old "
    "schema, fails as soon as this runs."
)


def _dropped_relations(ctx: RuleContext, stmt: Statement) -> Iterator[Finding]:
    node = stmt.node
    if not isinstance(node, ast.DropStmt) or node.removeType not in _RELATION_KINDS:
        return
    kind = _RELATION_KINDS[node.removeType]
    for name in (names_key(names) for names in node.objects):
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


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt in ctx.script.statements:
        yield from _dropped_relations(ctx, stmt)
        yield from _renames(ctx, stmt)
    for stmt, table, cmd in existing_table_alters(ctx.script):
        if cmd.subtype == AlterTableType.AT_DropColumn:
            yield Finding(
                f'Dropping column "{cmd.name}" of "{table}" is not backward compatible: {_BREAKS} Release code '
                "that no longer reads or writes the column first, then drop it in a later migration.",
                stmt.at(),
            )
        elif cmd.subtype == AlterTableType.AT_AlterColumnType:
            yield Finding(
                f'Changing the type of column "{cmd.name}" of "{table}" is not backward compatible, and usually '
                "rewrites the table and its indexes under an ACCESS EXCLUSIVE lock. Add a column of the new "
                "type, write both and backfill in batches, switch readers, then drop the old column.",
                stmt.at(),
            )


RULE = Rule("schema.backward-compatibility", 901, Level.WARNING, __doc__, check, BAD, GOOD)
