from __future__ import annotations

from typing import Any

import pytest

from plancheck.checks.groups import DatabaseResource
from plancheck.checks.specs import MAX_TARGETS, InvalidPlan, PlannedCheck, derive_targets, validate_specs

SHEET_A = "a" * 64
SHEET_B = "b" * 64

DATABASES = [
    DatabaseResource("pg1", "orders", "prod"),
    DatabaseResource("pg1", "tenant_b", "prod", {"tier": "gold"}),
    DatabaseResource("pg2", "tenant_a", "prod", {"tier": "gold"}),
    DatabaseResource("pg2", "tenant_c", "test"),
]
GROUPS = {
    "gold": 'resource.labels["tier"] == "gold"',
    "tenants": 'resource.database_name.startsWith("tenant_")',
    "nobody": 'resource.environment_id == "staging"',
    "broken": "resource.nope == 1",
}


@pytest.mark.parametrize(
    "specs, message",
    [
        ([], "non-empty list of specs"),
        ({"sheet": SHEET_A}, "non-empty list of specs"),
        (["pg1/orders"], "spec 1 must be an object"),
        ([{"sheet": SHEET_A, "group": "gold", "targets": ["pg1/orders"]}], "spec 1 mixes group 'gold' with single"),
        (
            [{"sheet": SHEET_A, "groups": ["gold", "tenants"]}],
            'spec 1 uses "groups" \\(2 groups\\); a spec targets exactly one',
        ),
        ([{"sheet": SHEET_A, "targets": []}], "spec 1 has no targets"),
        ([{"sheet": SHEET_A}], "spec 1 has no targets"),
        (
            [{"sheet": SHEET_A, "targets": ["pg1/orders"]}, {"sheet": SHEET_B, "targets": ["orders"]}],
            "spec 2: target 'orders' is not of the form instance/database",
        ),
        ([{"sheet": SHEET_A, "targets": ["pg1/a/b"]}], "not of the form instance/database"),
        ([{"sheet": SHEET_A, "targets": ["pg1/"]}], "not of the form instance/database"),
        ([{"sheet": SHEET_A, "targets": [7]}], "not of the form instance/database"),
        (
            [{"sheet": SHEET_A, "targets": ["pg1/orders", "pg1/orders"]}],
            "database 'pg1/orders' appears twice in spec 1",
        ),
        (
            [{"sheet": SHEET_A, "targets": ["pg1/orders"]}, {"sheet": SHEET_B, "targets": ["pg1/orders"]}],
            "database 'pg1/orders' appears in spec 1 and spec 2",
        ),
        (
            [{"sheet": SHEET_A, "group": "gold"}, {"sheet": SHEET_B, "group": "gold"}],
            "group 'gold' appears in spec 1 and spec 2",
        ),
        ([{"sheet": "abc", "targets": ["pg1/orders"]}], '"sheet" must be the sha256'),
        ([{"targets": ["pg1/orders"]}], '"sheet" must be the sha256'),
        ([{"sheet": SHEET_A, "group": ""}], '"group" must be a group key'),
        ([{"sheet": SHEET_A, "target": ["pg1/orders"]}], "unknown keys target"),
    ],
)
def test_invalid_specs_are_rejected_with_a_clear_message(specs: Any, message: str) -> None:
    with pytest.raises(InvalidPlan, match=message):
        validate_specs(specs)


def test_explicit_targets_keep_spec_order() -> None:
    specs = [
        {"sheet": SHEET_A, "targets": ["pg2/tenant_c", "pg1/orders"]},
        {"sheet": SHEET_B, "targets": ["pg1/tenant_b"]},
    ]
    checks = derive_targets(specs, DATABASES, GROUPS)
    assert [(c.database.name, c.sheet) for c in checks] == [
        ("pg2/tenant_c", SHEET_A),
        ("pg1/orders", SHEET_A),
        ("pg1/tenant_b", SHEET_B),
    ]
    assert checks[0] == PlannedCheck(DATABASES[3], SHEET_A)


def test_group_members_and_single_databases_in_separate_specs() -> None:
    specs = [{"sheet": SHEET_A, "group": "gold"}, {"sheet": SHEET_B, "targets": ["pg1/orders"]}]
    checks = derive_targets(specs, DATABASES, GROUPS)
    assert [(database.name, sheet) for database, sheet in checks] == [
        ("pg1/tenant_b", SHEET_A),
        ("pg2/tenant_a", SHEET_A),
        ("pg1/orders", SHEET_B),
    ]


def test_group_sampling_limits_members() -> None:
    checks = derive_targets([{"sheet": SHEET_A, "group": "tenants"}], DATABASES, GROUPS, sampling_size=2)
    assert [c.database.name for c in checks] == ["pg1/tenant_b", "pg2/tenant_a"]


@pytest.mark.parametrize(
    "specs, message",
    [
        (
            [{"sheet": SHEET_A, "targets": ["pg1/orders", "pg9/nope", "pg1/gone"]}],
            "spec 1: unknown 2 databases: pg9/nope, pg1/gone",
        ),
        ([{"sheet": SHEET_A, "group": "missing"}], "unknown database group 'missing'"),
        ([{"sheet": SHEET_A, "group": "nobody"}], "database group 'nobody' matches no database"),
        ([{"sheet": SHEET_A, "group": "broken"}], "database group 'broken' has an invalid expression: unknown field"),
        (
            [{"sheet": SHEET_A, "group": "gold"}, {"sheet": SHEET_B, "group": "tenants"}],
            "2 databases would be checked more than once .*pg1/tenant_b, pg2/tenant_a",
        ),
        (
            [{"sheet": SHEET_A, "group": "gold"}, {"sheet": SHEET_B, "targets": ["pg2/tenant_a"]}],
            "1 database would be checked more than once",
        ),
    ],
)
def test_derivation_errors_are_clear(specs: Any, message: str) -> None:
    with pytest.raises(InvalidPlan, match=message):
        derive_targets(specs, DATABASES, GROUPS)


def _fleet(count: int) -> list[DatabaseResource]:
    return [DatabaseResource("pg", f"db{i:05}", "prod") for i in range(count)]


def test_more_than_max_explicit_targets_is_rejected() -> None:
    fleet = _fleet(MAX_TARGETS + 1)
    specs = [{"sheet": SHEET_A, "targets": [d.name for d in fleet]}]
    with pytest.raises(InvalidPlan, match="the plan has 10,001 targets; at most 10,000"):
        validate_specs(specs)


def test_more_than_max_targets_through_a_group_is_rejected() -> None:
    fleet = _fleet(MAX_TARGETS + 1)
    with pytest.raises(InvalidPlan, match="10,001 targets"):
        derive_targets([{"sheet": SHEET_A, "group": "all"}], fleet, {"all": "true"})
    assert (
        len(derive_targets([{"sheet": SHEET_A, "group": "all"}], fleet[:MAX_TARGETS], {"all": "true"})) == MAX_TARGETS
    )
