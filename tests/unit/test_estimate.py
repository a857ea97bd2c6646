"""Reading the rows a statement changes from EXPLAIN JSON, on plan shapes of PostgreSQL 13 to 17."""

from __future__ import annotations

from typing import Any

import pglast
import pytest

from plancheck.checks.estimate import DEPENDS_ON_SUBQUERY, MODIFYING_CTE, Estimate, modifications, read_plan


def node(
    kind: str, rows: float, relationship: str | None = None, *children: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    plan: dict[str, Any] = {"Node Type": kind, "Plan Rows": rows, **fields}
    if relationship:
        plan["Parent Relationship"] = relationship
    if children:
        plan["Plans"] = list(children)
    return plan


def modify(*children: dict[str, Any], relationship: str | None = None) -> dict[str, Any]:
    return node("ModifyTable", 0, relationship, *children, Operation="Update")


def test_the_scan_child_counts_not_the_initplan() -> None:
    plan = modify(
        node("Result", 1, "InitPlan", **{"Subplan Name": "InitPlan 1 (returns $0)"}), node("Seq Scan", 50_000, "Outer")
    )
    assert read_plan(plan) == Estimate(50_000)


def test_every_data_modifying_cte_counts_and_is_doubted() -> None:
    cte = modify(node("Seq Scan", 530.4, "Outer", Filter="(k = 1)"), relationship="InitPlan")
    plan = modify(cte, node("CTE Scan", 530, "Outer", **{"CTE Name": "d"}))
    assert read_plan(plan) == Estimate(1060, (MODIFYING_CTE,))
    in_select = node("Aggregate", 1, None, cte, node("CTE Scan", 530, "Outer"))
    assert read_plan(in_select) == Estimate(530, (MODIFYING_CTE,))


@pytest.mark.parametrize(
    "condition",
    [
        "(k = $0)",
        "(k = (InitPlan 1).col1)",
        "((k)::numeric > (SubPlan 1))",
        "(hashed SubPlan 2)",
        "(NOT (ANY (id = (hashed SubPlan 1).col1)))",
    ],
)
def test_a_row_count_hanging_on_a_subquery_result_is_doubted(condition: str) -> None:
    plan = modify(node("Seq Scan", 500, "Outer", Filter=condition))
    assert read_plan(plan) == Estimate(500, (DEPENDS_ON_SUBQUERY,))
    one_time = modify(
        node("Result", 50_000, "Outer", node("Seq Scan", 50_000, "Outer"), **{"One-Time Filter": condition})
    )
    assert read_plan(one_time).doubts == (DEPENDS_ON_SUBQUERY,)


def test_string_literals_and_value_subqueries_are_not_doubted() -> None:
    assert read_plan(modify(node("Seq Scan", 1, "Outer", Filter="(v = '$1 and SubPlan 2'::text)"))) == Estimate(1)
    value = modify(node("Result", 1, "InitPlan"), node("Seq Scan", 10, "Outer", Filter="(id < 11)"))
    assert read_plan(value) == Estimate(10)


def test_partitions_of_older_servers_are_summed_and_selects_give_their_rows() -> None:
    assert read_plan(modify(node("Seq Scan", 10, "Member"), node("Seq Scan", 20, "Member"))) == Estimate(30)
    assert read_plan(node("Aggregate", 1, None, node("Seq Scan", 9_000, "Outer"))) == Estimate(1)


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("SELECT 1", []),
        ("UPDATE t SET a = 1", ["UPDATE"]),
        ("WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d", ["DELETE", "INSERT"]),
        ("WITH s AS (SELECT 1), u AS (UPDATE a SET x = 1 RETURNING 1) SELECT * FROM u", ["UPDATE"]),
        ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", ["MERGE"]),
    ],
)
def test_modifications_of_a_statement(sql: str, kinds: list[str]) -> None:
    [raw] = pglast.parse_sql(sql)
    assert [kind for kind, _ in modifications(raw.stmt)] == kinds
