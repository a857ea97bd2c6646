"""Every registered rule: its BAD examples produce a finding of that rule, its GOOD examples none, and
each example's findings (code, line, column) are pinned in examples.snapshot.

After a deliberate change, rewrite the snapshot with
`PLANCHECK_UPDATE_SNAPSHOTS=1 pytest tests/unit/rules/test_rule_examples.py` and review its diff.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

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


SNAPSHOT = Path(__file__).with_name("examples.snapshot")


def snapshot_text() -> str:
    """One line per example: rule, example, and code@line:column of each finding ("-" for none)."""
    lines = []
    for rule in ALL_RULES:
        for kind, examples in (("bad", rule.bad), ("good", rule.good)):
            for i, sql in enumerate(examples):
                lines_of = parse_script(sql).lines
                found = [
                    f"{rule.code}@{line}:{column}"
                    for line, column in (lines_of(finding.index) for finding in findings(rule, sql))
                ]
                lines.append(f"{rule.name} {kind}[{i}]: {' '.join(found) or '-'}")
    return "\n".join(lines) + "\n"


def test_examples_match_their_snapshot() -> None:
    current = snapshot_text()
    if os.environ.get("PLANCHECK_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(current)
    pinned = SNAPSHOT.read_text()
    diff = "".join(difflib.unified_diff(pinned.splitlines(True), current.splitlines(True), "pinned", "now"))
    assert current == pinned, f"findings of the rule examples changed:\n{diff}"


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
