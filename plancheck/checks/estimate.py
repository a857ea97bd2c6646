"""How many rows a statement changes, read from its EXPLAIN (FORMAT JSON) plan, and how far to trust it.

Every ModifyTable node of the plan counts — the statement's own and those of its data-modifying CTEs,
which the plan attaches as InitPlans — each with the rows its scan child feeds it (a ModifyTable
reports 0 rows itself unless it has RETURNING). InitPlan and SubPlan children of a ModifyTable
compute values (`SET v = (SELECT …)`), not the rows it changes, and are skipped.

Pure logic on the plan's JSON: no database here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast

# Children of a node that compute values for it rather than feed it rows.
_VALUE_CHILDREN = frozenset({"InitPlan", "SubPlan"})
# A condition that uses the output of an InitPlan or SubPlan: `$0` (PostgreSQL ≤ 16), `(InitPlan 1).col1`,
# `(SubPlan 1)`, `hashed SubPlan 2`. The planner cannot know that value, so its row count is a default guess.
_PLAN_PARAMETER = re.compile(r"\$\d+|\b(?:InitPlan|SubPlan) \d+")
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
Modifying = ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
_KINDS = {ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE", ast.MergeStmt: "MERGE"}

DEPENDS_ON_SUBQUERY = "the rows it changes depend on a subquery's result, which the planner cannot know in advance"
MODIFYING_CTE = "it changes rows in a WITH clause, and the planner sizes each part of the statement on its own"


@dataclass(frozen=True)
class Estimate:
    """Rows a statement changes (or returns, if it changes none), with the reasons not to trust the figure."""

    rows: int
    doubts: tuple[str, ...] = ()


def read_plan(plan: dict[str, Any]) -> Estimate:
    """The estimate of one statement from the top node ("Plan") of its EXPLAIN (FORMAT JSON) output."""
    writes = [node for node in _nodes(plan) if node.get("Node Type") == "ModifyTable"]
    if not writes:
        return Estimate(round(plan.get("Plan Rows", 0)))
    doubts: list[str] = []
    if any(node.get("Parent Relationship") == "InitPlan" for node in writes):
        doubts.append(MODIFYING_CTE)
    feeds = [child for node in writes for child in _row_children(node)]
    if any(_uses_plan_parameter(node) for feed in feeds for node in _nodes(feed)):
        doubts.append(DEPENDS_ON_SUBQUERY)
    return Estimate(round(sum(feed.get("Plan Rows", 0) for feed in feeds)), tuple(doubts))


def modifying_ctes(node: ast.Node) -> list[Modifying]:
    """The data-modifying statements of a statement's WITH clause (PostgreSQL allows them only there)."""
    with_clause = getattr(node, "withClause", None)
    ctes = with_clause.ctes if with_clause is not None and with_clause.ctes else ()
    return [cte.ctequery for cte in ctes if isinstance(cte.ctequery, _MODIFYING)]


def modifications(node: ast.Node) -> list[tuple[str, Modifying]]:
    """(INSERT | UPDATE | DELETE | MERGE, statement) for what a statement changes: its WITH clause's
    data-modifying statements first, then itself."""
    parts = [*modifying_ctes(node), *([node] if isinstance(node, _MODIFYING) else [])]
    return [(_KINDS[type(part)], part) for part in parts]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan tree, `plan` first; iterative, for deep plans."""
    stack = [plan]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.get("Plans", [])))


def _row_children(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The children that feed a node its rows (one on PostgreSQL ≥ 14, one per partition before)."""
    return [child for child in node.get("Plans", []) if child.get("Parent Relationship") not in _VALUE_CHILDREN]


def _uses_plan_parameter(node: dict[str, Any]) -> bool:
    conditions = (value for key, value in node.items() if isinstance(value, str) and key.endswith(("Cond", "Filter")))
    return any(_PLAN_PARAMETER.search(_STRING_LITERAL.sub("''", condition)) for condition in conditions)
