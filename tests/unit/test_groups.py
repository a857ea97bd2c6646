from __future__ import annotations

import re

import pytest
from celpy import evaluation
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Tree

from plancheck.checks import groups
from plancheck.checks.groups import (
    DatabaseResource,
    InvalidExpression,
    compile_expression,
    matches,
    select_members,
)

TENANT = DatabaseResource("pg-prod", "tenant_a", "prod", {"tier": "gold", "region": "eu"})
OTHER = DatabaseResource("pg-test", "orders", "test", {})


@pytest.mark.parametrize(
    "expression, tenant, other",
    [
        ('resource.environment_id == "prod" && resource.database_name.startsWith("tenant_")', True, False),
        ('resource.labels["tier"] == "gold"', True, False),
        ('"region" in resource.labels', True, False),
        ("has(resource.labels.tier)", True, False),
        ('resource.labels.exists(k, k.startsWith("reg"))', True, False),
        ('resource.instance_id in ["pg-prod", "pg-test"]', True, True),
        ('resource.database_name.matches("^(orders|billing)$")', False, True),
        ('size(resource.labels) == 0 || resource.environment_id != "prod"', False, True),
        ("true", True, True),
    ],
)
def test_valid_expressions_select_databases(expression: str, tenant: bool, other: bool) -> None:
    compiled = compile_expression(expression)
    assert (matches(compiled, TENANT), matches(compiled, OTHER)) == (tenant, other)


@pytest.mark.parametrize(
    "expression, message",
    [
        ('resource.environment_id == "prod" &&', "syntax error"),
        ('resource.databse_name == "x"', "unknown field resource.databse_name"),
        ('false && resource.enviroment_id == "prod"', "unknown field resource.enviroment_id"),
        ('environment_id == "prod"', "unknown variable 'environment_id'"),
        ('resource.labels.exists(k, j == "x")', "unknown variable 'j'"),
        ('resource.database_name.startWith("t")', "unknown function 'startWith'"),
        ("resource.database_name", "must be true or false"),
        ('resource.labels["tier"]', "must be true or false"),
        ("resource.database_name == 1", "cannot be evaluated"),
        ('resource.labels["n"] + 1 > 2', "cannot be evaluated"),
    ],
)
def test_invalid_expressions_are_rejected_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(InvalidExpression, match=message):
        compile_expression(expression)


def test_label_lookup_that_fails_on_a_database_means_not_a_member() -> None:
    compiled = compile_expression('resource.labels["tier"] != "gold"')
    assert not matches(compiled, OTHER)  # no "tier" label: a CEL error, not a match
    assert matches(compiled, DatabaseResource("i", "d", "prod", {"tier": "silver"}))


def _fleet() -> list[DatabaseResource]:
    return [
        DatabaseResource(f"pg-{i % 3}", f"tenant_{i:03}", "prod" if i % 2 else "test", {"shard": str(i % 4)})
        for i in range(30)
    ]


def test_members_are_ordered_by_instance_then_name() -> None:
    members = select_members(compile_expression('resource.environment_id == "prod"'), reversed(_fleet()))
    assert [m.name for m in members] == sorted(m.name for m in _fleet() if m.environment_id == "prod")
    assert len(members) == 15


def test_sampling_keeps_the_first_members_in_order() -> None:
    compiled = compile_expression('resource.labels["shard"] == "1"')
    every = select_members(compiled, _fleet())
    assert select_members(compiled, _fleet(), sampling_size=3) == every[:3]
    assert select_members(compiled, _fleet(), sampling_size=0) == every
    assert select_members(compiled, _fleet(), sampling_size=100) == every
    with pytest.raises(ValueError):
        select_members(compiled, _fleet(), sampling_size=-1)


MIXED = compile_expression('resource.environment_id == "test" || resource.labels["shard"] == "3"')


@settings(max_examples=30)
@given(st.permutations(_fleet()), st.one_of(st.none(), st.integers(min_value=1, max_value=40)))
def test_selection_does_not_depend_on_input_order(fleet: list[DatabaseResource], sampling: int | None) -> None:
    assert select_members(MIXED, fleet, sampling) == select_members(MIXED, _fleet(), sampling)


# -- cost: user expressions run in bounded time --------------------------------------------------------
LIST_100 = "[" + ",".join(str(i) for i in range(100)) + "]"


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("size([" + ",".join(str(i) for i in range(10_000)) + "]) > 0", "at most 2,000 are allowed"),
        ("size([" + ",".join(["1"] * 101) + "]) > 0", "a list literal has 101 elements; at most 100"),
        ("{" + ",".join(f'"k{i}": {i}' for i in range(101)) + "}.size() > 0", "a map literal has 101 elements"),
        ('"' + "x" * 300 + '" != resource.database_name', "longer than 256 characters"),
        ("(" * 40 + "true" + ")" * 40, "nests 41 levels deep; at most 12"),
        (" + ".join([f"size({LIST_100})"] * 5) + " > 0", "too expensive"),
        (f"{LIST_100}.all(a, {LIST_100}.all(b, size([a, b]) == 2))", "too expensive: one evaluation may visit"),
        (f"{LIST_100}.map(a, size({LIST_100})).size() > 0", "too expensive"),
        ("resource.labels.all(k, resource.labels.all(j, resource.labels.all(i, k + j + i != '')))", "too expensive"),
    ],
    ids=["long", "big-list", "big-map", "long-string", "deep", "sizes", "nested-all", "size-in-map", "labels-cubed"],
)
def test_expensive_expressions_are_rejected_before_any_evaluation(
    expression: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def evaluated(compiled: object) -> None:
        raise AssertionError("an expensive expression was evaluated")

    monkeypatch.setattr(groups, "_check_boolean", evaluated)
    with pytest.raises(InvalidExpression, match=re.escape(reason)):
        compile_expression(expression)


ACCEPTED = [
    'resource.database_name.startsWith("shop_") && "tier" in resource.labels && resource.labels["tier"] == "gold"',
    'resource.labels.exists(k, k.startsWith("reg"))',
    'resource.labels.all(k, resource.labels[k] != "")',
    "[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3].map(b, a + b)).size() > 0",
    "[1,2,3].filter(x, x > 1).map(y, y * 2).size() == 2",
    "[[1,2],[3,4]].all(l, l.all(x, x > 0))",
    '{"a": 1, "b": 2}.all(k, k != "c") && resource.labels.size() >= 0',
]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_the_static_cost_bounds_what_an_evaluation_visits(expression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on the interpreter itself: every tree node cel-python visits, on a database with 12 labels."""
    visits = 0
    visit = evaluation.Evaluator._visit_tree

    def counting(self: evaluation.Evaluator, tree: Tree) -> object:
        nonlocal visits
        visits += 1
        return visit(self, tree)

    monkeypatch.setattr(evaluation.Evaluator, "_visit_tree", counting)
    compiled = compile_expression(expression)
    resource = DatabaseResource("pg", "shop_1", "test", {**{f"k{i}": "v" for i in range(11)}, "tier": "gold"})
    visits = 0
    matches(compiled, resource)
    assert 0 < visits <= compiled.cost(len(resource.labels)) <= compiled.cost() <= groups.MAX_COST


def test_membership_over_many_databases_is_bounded_before_any_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = [DatabaseResource("pg", f"tenant_{i:05}", "prod", {"tier": "gold", "n": str(i)}) for i in range(10_000)]
    heavy = compile_expression("[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3].map(b, a + b)).size() > 0")
    monkeypatch.setattr(groups, "matches", lambda *args: pytest.fail("evaluated a refused membership"))
    with pytest.raises(InvalidExpression, match=r"over 10,000 databases that exceeds the budget of 2,000,000 nodes"):
        select_members(heavy, fleet)
    cheap = compile_expression('resource.labels["tier"] == "gold"')
    assert cheap.cost(2) * len(fleet) <= groups.MEMBERSHIP_BUDGET  # a usual expression fits 10,000 databases
    monkeypatch.undo()
    assert len(select_members(heavy, fleet[:100])) == 100  # the same expression over fewer databases is fine


def test_a_method_call_without_arguments_is_validated_not_crashed() -> None:
    assert compile_expression("resource.labels.size() == 0").cost() > 0
