"""ALTER TABLE ... DETACH PARTITION without CONCURRENTLY, on a partitioned table the script did not
create.

A plain DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the partitioned table: every query on
any partition waits behind it, and it waits behind every running query first.

Fix: DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+, outside a transaction block), which only
takes a SHARE UPDATE EXCLUSIVE lock on the parent.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType

from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import relation_key

BAD = [
    "ALTER TABLE events DETACH PARTITION events_2020",
]
GOOD = [
    "ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY",
    "CREATE TABLE t (id bigint, at date) PARTITION BY RANGE (at);\n"
    "CREATE TABLE t_2020 PARTITION OF t FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');\n"
    "ALTER TABLE t DETACH PARTITION t_2020",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    for stmt, table, cmd in ctx.script.existing_alters:
        partition = cmd.def_
        if (
            cmd.subtype == AlterTableType.AT_DetachPartition
            and isinstance(partition, ast.PartitionCmd)
            and not partition.concurrent
            and partition.name is not None
        ):
            yield Finding(
                f'DETACH PARTITION "{relation_key(partition.name)}" without CONCURRENTLY takes an ACCESS '
                f'EXCLUSIVE lock on "{table}": every query on any of its partitions waits behind it, and it '
                "waits behind every running query first. Use DETACH PARTITION ... CONCURRENTLY (PostgreSQL "
                "14+, outside a transaction block), which only takes a SHARE UPDATE EXCLUSIVE lock.",
                stmt.at(partition.name),
            )


RULE = Rule("table.detach-partition-concurrently", 606, Level.WARNING, __doc__, check, BAD, GOOD)
