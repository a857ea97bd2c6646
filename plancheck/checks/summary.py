"""STATEMENT_SUMMARY_REPORT: what a sheet does to one target — statement types, tables, affected rows.

The statement classification lives here (`parse_statements`, `script_statements`) and nowhere else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pglast
from pglast import ast
from pglast.enums import ObjectType
from pglast.parser import ParseError

from plancheck.checks.estimate import Estimate, modifying_ctes
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.checks.rules.script import Script, items, on_parser_stack

if TYPE_CHECKING:
    from plancheck.checks.session import TargetSession

DEFAULT_SCHEMA = "public"
MAX_DML_SAMPLES = 10
MAX_TABLES_IN_TEXT = 10

_KINDS: dict[type[ast.Node], str] = {
    ast.CreateStmt: "CREATE_TABLE",
    ast.IndexStmt: "CREATE_INDEX",
    ast.ViewStmt: "CREATE_VIEW",
    ast.CreateSeqStmt: "CREATE_SEQUENCE",
    ast.AlterSeqStmt: "ALTER_SEQUENCE",
    ast.CreateSchemaStmt: "CREATE_SCHEMA",
    ast.CreateFunctionStmt: "CREATE_FUNCTION",
    ast.CreateTrigStmt: "CREATE_TRIGGER",
    ast.CreateExtensionStmt: "CREATE_EXTENSION",
    ast.InsertStmt: "INSERT",
    ast.UpdateStmt: "UPDATE",
    ast.DeleteStmt: "DELETE",
    ast.MergeStmt: "MERGE",
    ast.TruncateStmt: "TRUNCATE",
    ast.SelectStmt: "SELECT",
    ast.CommentStmt: "COMMENT",
    ast.GrantStmt: "GRANT",
    ast.TransactionStmt: "TRANSACTION",
    ast.VariableSetStmt: "SET",
}
# Statements whose `relation` is a table they change (ALTER_TABLE also comes from RenameStmt).
_RELATION_KINDS = frozenset({"CREATE_TABLE", "CREATE_INDEX", "ALTER_TABLE", "INSERT", "UPDATE", "DELETE", "MERGE"})
# Rename targets that are parts of a relation: the statement alters the relation (ALTER TABLE … RENAME COLUMN).
_RELATION_PARTS = frozenset({ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT})
# DDL that rewrites, scans, locks or removes the existing rows of the tables it names.
_ROW_TOUCHING_DDL = frozenset({"ALTER_TABLE", "DROP_TABLE", "TRUNCATE", "CREATE_INDEX"})
# DML whose row count only the target's planner knows (INSERT … VALUES is counted from the text).
_ESTIMATED_DML = frozenset({"UPDATE", "DELETE", "MERGE", "INSERT"})

Table = tuple[str, str]
T = TypeVar("T")


@dataclass(frozen=True)
class Statement:
    """One statement of a sheet, classified."""

    text: str
    kind: str
    tables: tuple[Table, ...]
    inserted_rows: int | None = None  # INSERT … VALUES / DEFAULT VALUES: rows written, known without a target


def parse_statements(sql: str) -> list[Statement]:
    """Split and classify a sheet; raises pglast's ParseError on a syntax error."""
    nodes = on_parser_stack(pglast.parse_sql, sql)
    slices = pglast.split(sql, only_slices=True)
    return [_classify(raw.stmt, sql[part]) for raw, part in zip(nodes, slices, strict=True) if raw.stmt is not None]


def script_statements(script: Script) -> list[Statement]:
    """What `parse_statements(script.text)` gives, from the review's parse (`advise.parse`) of the text.

    The texts are the review's statement texts (`stmt.sql`), which pglast's split gives too: the row
    estimates of the review and of the summary are answered by one EXPLAIN each.
    """
    if any(stmt.names_masked for stmt in script.statements):
        return parse_statements(script.text)  # table names must be the real ones: parse the slow way
    return [_classify(stmt.node, stmt.sql) for stmt in script.statements]


def summarize(sql: str, target_name: str, session: TargetSession | None, script: Script | None = None) -> CheckResult:
    """The summary report of `sql` on one target; estimates need a session, the rest is parsing.

    `script`, the review's parse of the same `sql`, saves parsing it again.
    """
    if script is not None and script.text != sql:
        raise ValueError("script is not the parse of sql")
    try:
        statements = script_statements(script) if script is not None else parse_statements(sql)
    except ParseError:
        return CheckResult(
            status=Status.WARNING,
            type=CheckType.STATEMENT_SUMMARY_REPORT,
            target=target_name,
            title="No summary report",
            content="The SQL has a syntax error, so no summary report was produced (see the SQL review results).",
        )
    report = build_report(statements, session)
    return CheckResult(
        status=Status.SUCCESS,
        type=CheckType.STATEMENT_SUMMARY_REPORT,
        target=target_name,
        title="Statement summary",
        content=describe(report),
        report=report,
    )


def build_report(statements: Sequence[Statement], session: TargetSession | None) -> dict[str, Any]:
    """Counts, tables with row estimates, affected rows (DML sampled and scaled, see below), and whether
    that figure can be trusted.

    Affected rows = EXPLAIN estimates of up to MAX_DML_SAMPLES evenly spaced DML statements, averaged
    and scaled to the number of DML statements (statements the planner cannot plan on the target are
    left out of the average) + rows written by INSERT … VALUES + current rows of the distinct existing
    tables that row-touching DDL names. Anything that makes the DML figure a guess — sampling, a
    statement the target cannot plan, a row count that hangs on a subquery's result, a data-modifying
    CTE — is listed in `estimate_doubts`, and `estimate_reliable` is false.
    """
    tables = sorted(_distinct(table for s in statements for table in s.tables))
    rows = {table: session.table_row_estimate(*table) if session else None for table in tables}
    dml = [s for s in statements if s.kind in _ESTIMATED_DML and s.inserted_rows is None]
    sampled = even_sample(dml, MAX_DML_SAMPLES) if session else []
    planned = [(s, session.estimate(s.text)) for s in sampled] if session else []
    estimates = [estimate for _, estimate in planned if estimate is not None]
    dml_rows = round(sum(e.rows for e in estimates) * len(dml) / len(estimates)) if estimates else 0
    inserted = sum(s.inserted_rows or 0 for s in statements)
    ddl_tables = _distinct(table for s in statements if s.kind in _ROW_TOUCHING_DDL for table in s.tables)
    ddl_rows = sum(rows[table] or 0 for table in ddl_tables)
    doubts = _doubts(len(dml), planned, session is not None)
    return {
        "statement_types": dict(sorted(Counter(s.kind for s in statements).items())),
        "changed_resources": [
            {"schema": schema, "table": name, "row_estimate": rows[(schema, name)]} for schema, name in tables
        ],
        "affected_rows": dml_rows + inserted + ddl_rows,
        "dml_total": len(dml),
        "dml_sampled": len(sampled),
        "dml_estimated": len(estimates),
        "estimate_reliable": not doubts,
        "estimate_doubts": doubts,
    }


def _doubts(dml_total: int, planned: Sequence[tuple[Statement, Estimate | None]], connected: bool) -> list[str]:
    """Why the DML part of the affected rows may be far off, for people; empty when it can be trusted."""
    if dml_total and not connected:
        return [f"{dml_total} DML statement{'' if dml_total == 1 else 's'} not planned: no target connection"]
    doubts = _distinct(f"{s.kind}: {doubt}" for s, estimate in planned if estimate for doubt in estimate.doubts)
    unplanned = sum(1 for _, estimate in planned if estimate is None)
    if unplanned:
        doubts.append(f"{unplanned} of {len(planned)} sampled DML statements could not be estimated")
    if len(planned) < dml_total:
        doubts.append(f"only {len(planned)} of {dml_total} DML statements were planned and the total scaled from them")
    return doubts


def describe(report: dict[str, Any]) -> str:
    """One line for people: "3 statements (ALTER_TABLE 1, DELETE 2); ~12,400 rows affected; tables: …"."""
    types = report["statement_types"]
    total = sum(types.values())
    parts = [
        f"{total} statement{'' if total == 1 else 's'}"
        + (f" ({', '.join(f'{kind} {count}' for kind, count in types.items())})" if types else "")
    ]
    parts.append(f"~{report['affected_rows']:,} rows affected")
    if report["estimate_doubts"]:
        parts.append(f"row estimate uncertain ({'; '.join(report['estimate_doubts'])})")
    tables = [_describe_table(resource) for resource in report["changed_resources"]]
    if tables:
        more = len(tables) - MAX_TABLES_IN_TEXT
        parts.append("tables: " + ", ".join(tables[:MAX_TABLES_IN_TEXT]) + (f" and {more} more" if more > 0 else ""))
    return "; ".join(parts)


def even_sample(items: Sequence[T], limit: int) -> list[T]:
    """At most `limit` items spread evenly over `items`, first item included; deterministic."""
    count = min(limit, len(items))
    return [items[i * len(items) // count] for i in range(count)]


def _describe_table(resource: dict[str, Any]) -> str:
    name = f"{resource['schema']}.{resource['table']}"
    rows = resource["row_estimate"]
    return name if rows is None else f"{name} ({rows:,} rows)"


def _classify(node: ast.Node, text: str) -> Statement:
    """A statement's kind is what it changes: `WITH d AS (DELETE …) SELECT …` is a DELETE; the tables
    of its data-modifying CTEs count as changed."""
    ctes = modifying_ctes(node)
    kind = statement_kind(ctes[0] if ctes and isinstance(node, ast.SelectStmt) else node)
    inserted = _inserted_rows(node) if isinstance(node, ast.InsertStmt) and not ctes else None
    tables = [*(table for cte in ctes for table in _tables(cte, statement_kind(cte))), *_tables(node, kind)]
    return Statement(text=text, kind=kind, tables=tuple(_distinct(tables)), inserted_rows=inserted)


def statement_kind(node: ast.Node) -> str:
    """CREATE_TABLE, ALTER_TABLE, DROP_INDEX, DELETE, …; unknown statements get their node name."""
    if isinstance(node, ast.DropStmt):
        return "DROP_" + _object_name(node.removeType)
    if isinstance(node, ast.CreateTableAsStmt):
        return "CREATE_" + _object_name(node.objtype)
    if isinstance(node, ast.AlterTableStmt):
        return "ALTER_" + _object_name(node.objtype)
    if isinstance(node, ast.RenameStmt):
        renamed = node.relationType if node.renameType in _RELATION_PARTS else node.renameType
        return "ALTER_" + _object_name(renamed)
    kind = _KINDS.get(type(node))
    if kind:
        return kind
    name = type(node).__name__.removesuffix("Stmt")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _object_name(object_type: ObjectType | None) -> str:
    return ObjectType(object_type or 0).name.removeprefix("OBJECT_")


def _tables(node: ast.Node, kind: str) -> tuple[Table, ...]:
    """The tables a statement changes (not the ones it only reads)."""
    if isinstance(node, ast.DropStmt):
        dropped = items(node.objects) if kind == "DROP_TABLE" else ()
        return tuple(_qualified([name.sval for name in names]) for names in dropped)
    if isinstance(node, ast.TruncateStmt):
        return tuple(_range_var(relation) for relation in items(node.relations))
    if isinstance(node, ast.CreateTableAsStmt) and node.into is not None and node.into.rel is not None:
        return (_range_var(node.into.rel),)
    relation = getattr(node, "relation", None)
    return (_range_var(relation),) if kind in _RELATION_KINDS and relation is not None else ()


def _inserted_rows(node: ast.InsertStmt) -> int | None:
    if node.selectStmt is None:  # INSERT … DEFAULT VALUES
        return 1
    values = getattr(node.selectStmt, "valuesLists", None)
    return len(values) if values else None


def _range_var(relation: ast.RangeVar) -> Table:
    return (relation.schemaname or DEFAULT_SCHEMA, relation.relname or "")


def _qualified(names: list[str]) -> Table:
    return (names[-2] if len(names) > 1 else DEFAULT_SCHEMA, names[-1])


def _distinct(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))
