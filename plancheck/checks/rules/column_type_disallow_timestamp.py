"""Columns of type timestamp (without time zone).

It stores wall-clock time with no zone: values written from sessions in different time zones,
or around a daylight saving change, are ambiguous and compare wrongly.

Fix: use timestamptz.
"""

from __future__ import annotations

from collections.abc import Iterator

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import column_types

BAD = [
    "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamp)",
    "ALTER TABLE orders ADD COLUMN shipped_at timestamp(3) without time zone",
]
GOOD = [
    "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz, seen_at timestamp with time zone)",
    "SELECT now()::timestamp",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, column, name, type_name in column_types(ctx.script):
        if type_name == "timestamp":
            yield Finding(
                f'Column "{name}" is timestamp without time zone: it stores wall-clock time with no zone, so '
                "values written from sessions in different time zones, or around a daylight saving change, "
                "are ambiguous and compare wrongly. Use timestamptz (timestamp with time zone), which stores "
                "an absolute instant and displays it in the session's zone.",
                stmt.at(column),
            )


RULE = Rule("column.type-disallow-timestamp", 404, Level.WARNING, __doc__, check, BAD, GOOD)
