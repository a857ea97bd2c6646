"""Plan specs: validation, and which databases each spec's sheet is checked against. Pure logic.

A plan's specs are JSON:
    [{"sheet": "<sha256>", "targets": ["instance/db", ...]}, {"sheet": "<sha256>", "group": "<group key>"}]
A spec names single databases or exactly one database group, never both. Group membership is
evaluated here, when checks run (see groups.py for ordering and sampling).

A database may be targeted only once per plan, also through groups: a check result names its target,
so two sheets on one database could not be told apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from plancheck.checks.resource import DatabaseResource

MAX_TARGETS = 10_000
MAX_NAMES_IN_MESSAGE = 5
SPEC_KEYS = ("sheet", "targets", "group")
_SHEET = re.compile(r"[0-9a-f]{64}")
_DATABASE = re.compile(r"[^/\s]+/[^/\s]+")


class InvalidPlan(ValueError):
    """The plan's specs cannot be checked; the message says what to fix."""


class PlannedCheck(NamedTuple):
    """One (database, sheet) pair to check."""

    database: DatabaseResource
    sheet: str


def validate_specs(specs: Any) -> None:
    """Reject malformed specs with a message naming the spec (1-based) and the problem."""
    if not isinstance(specs, list) or not specs:
        raise InvalidPlan("a plan needs a non-empty list of specs")
    seen: dict[tuple[str, str], int] = {}
    for number, spec in enumerate(specs, 1):
        _validate_spec(number, spec)
        keys = [("database", name) for name in spec["targets"]] if "targets" in spec else [("group", spec["group"])]
        for key in keys:
            if key in seen:
                where = "twice in spec" if seen[key] == number else f"in spec {seen[key]} and spec"
                raise InvalidPlan(f"{key[0]} {key[1]!r} appears {where} {number}; target each database once")
            seen[key] = number
    explicit = sum(len(spec.get("targets", ())) for spec in specs)
    _check_cap(explicit)


def derive_targets(
    specs: Any,
    databases: Iterable[DatabaseResource],
    groups: Mapping[str, str],
    sampling_size: int | None = None,
) -> list[PlannedCheck]:
    """The (database, sheet) pairs a plan's checks cover, in spec order.

    `databases` are the project's registered databases, `groups` maps group keys to CEL expressions;
    `sampling_size` limits how many members of each group are checked.
    """
    validate_specs(specs)
    registered = {database.name: database for database in databases}
    checks: list[PlannedCheck] = []
    for number, spec in enumerate(specs, 1):
        if "group" in spec:
            members = _group_members(spec["group"], groups, registered.values(), sampling_size)
        else:
            members = _registered(number, spec["targets"], registered)
        checks.extend(PlannedCheck(database, spec["sheet"]) for database in members)
    _check_cap(len(checks))
    _reject_overlaps(checks)
    return checks


def _validate_spec(number: int, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise InvalidPlan(f'spec {number} must be an object with "sheet" and "targets" or "group"')
    if "groups" in spec:
        raise InvalidPlan(
            f'spec {number} uses "groups" ({_count(spec["groups"], "group")}); a spec targets exactly '
            'one group, with "group": KEY — put each group in its own spec'
        )
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise InvalidPlan(f"spec {number} has unknown keys {', '.join(unknown)} (expected {', '.join(SPEC_KEYS)})")
    if not isinstance(spec.get("sheet"), str) or not _SHEET.fullmatch(spec["sheet"]):
        raise InvalidPlan(f'spec {number}: "sheet" must be the sha256 (64 lowercase hex digits) of a sheet')
    if "group" in spec and "targets" in spec:
        raise InvalidPlan(
            f"spec {number} mixes group {spec['group']!r} with single databases; "
            "use one spec for the group and another for the databases"
        )
    if "group" in spec:
        if not isinstance(spec["group"], str) or not spec["group"]:
            raise InvalidPlan(f'spec {number}: "group" must be a group key')
        return
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        raise InvalidPlan(f'spec {number} has no targets: give "targets": ["instance/database", …] or "group": KEY')
    for target in targets:
        if not isinstance(target, str) or not _DATABASE.fullmatch(target):
            raise InvalidPlan(f"spec {number}: target {target!r} is not of the form instance/database")


def _group_members(
    key: str, groups: Mapping[str, str], databases: Iterable[DatabaseResource], sampling_size: int | None
) -> list[DatabaseResource]:
    from plancheck.checks.groups import InvalidExpression, compile_expression, select_members

    if key not in groups:
        raise InvalidPlan(f"unknown database group {key!r}")
    try:
        members = select_members(compile_expression(groups[key]), databases, sampling_size)
    except InvalidExpression as error:
        raise InvalidPlan(f"database group {key!r} has an invalid expression: {error}") from None
    if not members:
        raise InvalidPlan(f"database group {key!r} matches no database")
    return members


def _registered(
    number: int, names: Sequence[str], registered: Mapping[str, DatabaseResource]
) -> list[DatabaseResource]:
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise InvalidPlan(f"spec {number}: unknown {_count(unknown, 'database')}: {_some(unknown)}")
    return [registered[name] for name in names]


def _reject_overlaps(checks: Sequence[PlannedCheck]) -> None:
    """A database reached twice (e.g. by two groups, or a group and a single target) is ambiguous."""
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.database.name] = counts.get(check.database.name, 0) + 1
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        raise InvalidPlan(
            f"{_count(repeated, 'database')} would be checked more than once "
            f"(targeted by several specs): {_some(repeated)}"
        )


def _check_cap(count: int) -> None:
    if count > MAX_TARGETS:
        raise InvalidPlan(
            f"the plan has {count:,} targets; at most {MAX_TARGETS:,} are allowed — "
            "split it into several plans or narrow the group"
        )


def _count(items: Any, noun: str) -> str:
    count = len(items) if isinstance(items, (list, tuple)) else 1
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")
