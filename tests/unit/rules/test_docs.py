"""The rule documentation is generated from the rules or checked against them, so it stays current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME
from plancheck.cli.rules import rules_markdown

ROOT = Path(__file__).resolve().parents[3]
OWN_CODES = {200: "script-too-large", 201: "syntax-error"}


def test_docs_rules_md_is_current() -> None:
    assert (ROOT / "docs" / "rules.md").read_text() == rules_markdown(), (
        "docs/rules.md is stale: run `plancheck rules --markdown > docs/rules.md`"
    )


def test_every_rule_has_a_section_with_what_why_fix_and_examples() -> None:
    text = rules_markdown()
    for rule in ALL_RULES:
        section = text.split(f"## {rule.code} {rule.name}\n", 1)[1].split("\n## ", 1)[0]
        assert rule.what in section and f"**Why.** {rule.why}" in section and f"**Fix.** {rule.fix}" in section
        assert all(sql.rstrip(";") in section for sql in (*rule.bad, *rule.good))


def test_readme_points_to_the_generated_rules_and_names_only_real_ones() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/rules.md" in readme and "plancheck rules" in readme
    named = set(re.findall(r"`((?:statement|naming|column|table|index|schema)\.[a-z0-9-]+)`", readme))
    assert named and named <= set(RULES_BY_NAME), named - set(RULES_BY_NAME)


def coverage_rows(section: str) -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "rule-coverage.md").read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    return [(row[0].strip("| `"), row[1], row[2].rstrip(" |")) for row in rows]


@pytest.mark.parametrize("section", ["squawk", "Bytebase (PostgreSQL rule types)"])
def test_coverage_rows_name_real_rules_or_say_why_not(section: str) -> None:
    rows = coverage_rows(section)
    assert len({name for name, _, _ in rows}) == len(rows) > 30
    for name, ours, notes in rows:
        if ours == "not covered":
            assert len(notes.split()) >= 4, f"{name}: say why it is not covered"
            continue
        codes = [int(code) for code in re.findall(r"\b(\d{3})\b", ours)]
        assert codes, f"{name}: {ours!r} names no plancheck code"
        known = {rule.code: rule.name for rule in ALL_RULES} | OWN_CODES
        assert all(code in known for code in codes), f"{name}: {ours}"
        for code, rule_name in re.findall(r"(\d{3}) `([a-z0-9.-]+)`", ours):
            assert known[int(code)] == rule_name, f"{name}: {code} is {known[int(code)]}, not {rule_name}"


def test_coverage_counts_are_current() -> None:
    text = (ROOT / "docs" / "rule-coverage.md").read_text()
    for label, section in (("squawk", "squawk"), ("Bytebase", "Bytebase (PostgreSQL rule types)")):
        rows = coverage_rows(section)
        covered = sum(1 for _, ours, _ in rows if ours != "not covered")
        assert f"{label} **{covered} of {len(rows)}**" in text
