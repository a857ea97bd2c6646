from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        ('has(resource.labels.tier)', True, False),
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
