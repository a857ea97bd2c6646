"""Every registered rule: its BAD examples produce a finding of that rule, its GOOD examples none."""

from __future__ import annotations

import re

import pytest

from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME
from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import parse_script


def huge_estimate(sql: str) -> int:
    return 1_000_000


def findings(rule: Rule, sql: str) -> list[Finding]:
    ctx = RuleContext(parse_script(sql), rule.resolve_options({}), huge_estimate)
    return list(rule.check(ctx))


BAD_CASES = [pytest.param(rule, sql, id=f"{rule.name}-bad{i}") for rule in ALL_RULES for i, sql in enumerate(rule.bad)]
GOOD_CASES = [
    pytest.param(rule, sql, id=f"{rule.name}-good{i}") for rule in ALL_RULES for i, sql in enumerate(rule.good)
]


@pytest.mark.parametrize(("rule", "sql"), BAD_CASES)
def test_bad_example_is_found(rule: Rule, sql: str) -> None:
    found = findings(rule, sql)
    assert found, f"{rule.name} missed: {sql}"
    for finding in found:
        assert 0 <= finding.index < len(sql)
        assert len(finding.message) > 80, "a message says what is wrong, why it hurts, and how to fix it"


@pytest.mark.parametrize(("rule", "sql"), GOOD_CASES)
def test_good_example_is_clean(rule: Rule, sql: str) -> None:
    assert findings(rule, sql) == []


def test_registry_has_the_rules_with_stable_unique_names_and_codes() -> None:
    assert len(ALL_RULES) >= 22
    assert len(RULES_BY_NAME) == len(ALL_RULES)
    assert len({rule.code for rule in ALL_RULES}) == len(ALL_RULES)
    assert RULES_BY_NAME["statement.where-require-update-delete"].code == 202
    assert RULES_BY_NAME["statement.where-require-update-delete"].default_level is Level.ERROR


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda rule: rule.name)
def test_rule_is_documented_and_has_examples(rule: Rule) -> None:
    assert re.fullmatch(r"[a-z]+\.[a-z0-9-]+", rule.name)
    assert rule.default_level in (Level.ERROR, Level.WARNING)
    assert 200 < rule.code < 1000 and rule.code != 201  # 201 is the syntax error
    assert rule.description and len(rule.description.split()) > 20
    assert rule.bad and rule.good
