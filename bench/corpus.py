"""A deterministic corpus of real-looking PostgreSQL migrations for the review benchmark.

`python bench/corpus.py DIR [--files N] [--seed S]` writes DIR/V0001__create_customers.sql ... and
prints the statement count. Same seed, same files, byte for byte.

What the migrations contain, roughly as an application's history would: CREATE TABLE with primary
keys, foreign keys, defaults and checks; ALTER TABLE ADD COLUMN / ADD CONSTRAINT (FOREIGN KEY, CHECK,
UNIQUE, some NOT VALID followed by VALIDATE); CREATE INDEX (some CONCURRENTLY); backfill UPDATEs and
DELETEs with WHERE; INSERTs of reference data; SET lock_timeout; COMMENT ON. And some risky
statements a reviewer should flag: UPDATE/DELETE without WHERE, NOT NULL columns without default,
volatile defaults, SET NOT NULL, plain CREATE INDEX on existing tables, char(n) and timestamp
without time zone, ON DELETE CASCADE, TRUNCATE, DROP INDEX without CONCURRENTLY, INSERT without a
column list, SELECT *, DROP COLUMN, RENAME.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

NOUNS = [
    "customers",
    "orders",
    "order_items",
    "products",
    "categories",
    "suppliers",
    "invoices",
    "payments",
    "shipments",
    "addresses",
    "carts",
    "cart_items",
    "coupons",
    "reviews",
    "wishlists",
    "warehouses",
    "stock_levels",
    "refunds",
    "subscriptions",
    "plans",
    "accounts",
    "users",
    "sessions",
    "audit_events",
    "notifications",
    "tickets",
    "ticket_comments",
    "tags",
    "product_tags",
    "price_lists",
    "currencies",
    "tax_rates",
    "regions",
    "stores",
    "employees",
    "departments",
    "projects",
    "tasks",
    "time_entries",
    "documents",
    "attachments",
    "webhooks",
    "api_keys",
    "feature_flags",
    "experiments",
    "events",
    "page_views",
    "campaigns",
    "leads",
    "contacts",
]
COLUMN_TYPES = [
    ("text", None),
    ("varchar(255)", None),
    ("integer", "0"),
    ("bigint", "0"),
    ("numeric(12,2)", "0"),
    ("boolean", "false"),
    ("timestamptz", "now()"),
    ("date", "CURRENT_DATE"),
    ("jsonb", "'{}'::jsonb"),
    ("uuid", "gen_random_uuid()"),
    ("smallint", "1"),
    ("text[]", "'{}'"),
]
RISKY_TYPES = [("char(10)", None), ("timestamp", "now()"), ("character(3)", None)]
WORDS = [
    "status",
    "name",
    "title",
    "email",
    "phone",
    "code",
    "amount",
    "quantity",
    "price",
    "currency",
    "note",
    "description",
    "kind",
    "source",
    "priority",
    "score",
    "rank",
    "label",
    "external_ref",
    "locale",
    "country",
    "city",
    "zip",
    "discount",
    "weight",
    "color",
    "size",
    "channel",
    "reason",
    "version",
]
STATUSES = ["'active'", "'pending'", "'archived'", "'deleted'", "'draft'", "'paid'", "'shipped'"]


@dataclass
class Table:
    name: str
    columns: list[str] = field(default_factory=lambda: ["id"])
    indexed: set[str] = field(default_factory=set)


@dataclass
class Corpus:
    files: list[Path]
    statements: int


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tables: list[Table] = []
        self.unused = list(NOUNS)
        self.rng.shuffle(self.unused)
        self.serial = 0

    # -- helpers --------------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick_table(self) -> Table:
        return self.rng.choice(self.tables)

    def new_column(self, table: Table) -> str:
        for _ in range(50):
            name = self.rng.choice(WORDS) + ("" if self.chance(0.6) else f"_{self.rng.choice(WORDS)}")
            if name not in table.columns:
                table.columns.append(name)
                return name
        self.serial += 1
        name = f"col_{self.serial}"
        table.columns.append(name)
        return name

    def new_table_name(self) -> str:
        if self.unused:
            return self.unused.pop()
        self.serial += 1
        return f"{self.rng.choice(NOUNS)}_v{self.serial}"

    def value(self, column_type: str) -> str:
        if column_type.startswith(("integer", "bigint", "smallint")):
            return str(self.rng.randint(0, 10_000))
        if column_type.startswith("numeric"):
            return f"{self.rng.randint(0, 99_999) / 100:.2f}"
        if column_type == "boolean":
            return self.rng.choice(["true", "false"])
        return f"'{self.rng.choice(WORDS)}_{self.rng.randint(1, 999)}'"

    # -- statements -----------------------------------------------------------------------------
    def create_table(self) -> list[str]:
        table = Table(self.new_table_name())
        lines = [
            "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            if self.chance(0.6)
            else "    id bigserial PRIMARY KEY"
        ]
        extra: list[str] = []
        if self.tables and self.chance(0.7):
            for parent in self.rng.sample(self.tables, k=min(len(self.tables), self.rng.randint(1, 2))):
                column = f"{parent.name.rstrip('s')}_id"
                if column in table.columns:
                    continue
                table.columns.append(column)
                cascade = (
                    " ON DELETE CASCADE" if self.chance(0.15) else (" ON DELETE SET NULL" if self.chance(0.2) else "")
                )
                lines.append(f"    {column} bigint NOT NULL REFERENCES {parent.name} (id){cascade}")
                if self.chance(0.7):
                    extra.append(f"CREATE INDEX {table.name}_{column}_idx ON {table.name} ({column});")
                    table.indexed.add(column)
        for _ in range(self.rng.randint(2, 8)):
            column = self.new_column(table)
            column_type, default = self.rng.choice(RISKY_TYPES if self.chance(0.06) else COLUMN_TYPES)
            parts = [f"    {column} {column_type}"]
            if default and self.chance(0.5):
                parts.append(f"NOT NULL DEFAULT {default}")
            elif self.chance(0.2):
                parts.append("NOT NULL")
            lines.append(" ".join(parts))
        lines.append("    created_at timestamptz NOT NULL DEFAULT now()")
        table.columns.append("created_at")
        if self.chance(0.3):
            lines.append(
                f"    CONSTRAINT {table.name}_{table.columns[-2]}_check CHECK ({table.columns[-2]} IS NOT NULL)"
            )
        if self.chance(0.05):
            lines = [line for line in lines if "PRIMARY KEY" not in line]  # a table without a primary key
            lines.insert(0, "    id bigint NOT NULL")
        self.tables.append(table)
        statements = [f"CREATE TABLE {table.name} (\n" + ",\n".join(lines) + "\n);", *extra]
        if self.chance(0.3):
            statements.append(f"COMMENT ON TABLE {table.name} IS 'Stores {table.name.replace('_', ' ')}.';")
        return statements

    def add_column(self) -> list[str]:
        table = self.pick_table()
        column = self.new_column(table)
        column_type, default = self.rng.choice(RISKY_TYPES if self.chance(0.08) else COLUMN_TYPES)
        roll = self.rng.random()
        if roll < 0.45:
            suffix = ""
        elif roll < 0.75 and default:
            suffix = f" NOT NULL DEFAULT {default}"
        elif roll < 0.85:
            suffix = " NOT NULL"  # risky: NOT NULL without a default on an existing table
        elif roll < 0.92:
            suffix = (
                " DEFAULT md5(random()::text)"
                if column_type.startswith(("text", "varchar"))
                else " DEFAULT clock_timestamp()"
            )
            column_type = column_type if column_type.startswith(("text", "varchar")) else "timestamptz"
        else:
            suffix = f" DEFAULT {default}" if default else ""
        statements = [f"ALTER TABLE {table.name} ADD COLUMN {column} {column_type}{suffix};"]
        if self.chance(0.25):
            statements[0] = statements[0].replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS")
        return statements

    def add_constraint(self) -> list[str]:
        table = self.pick_table()
        roll = self.rng.random()
        if roll < 0.4 and len(self.tables) > 1:
            parent = self.rng.choice([t for t in self.tables if t is not table])
            column = f"{parent.name.rstrip('s')}_ref_id"
            if column in table.columns:
                column = self.new_column(table) + "_id"
            else:
                table.columns.append(column)
            name = f"{table.name}_{column}_fkey"
            statements = [f"ALTER TABLE {table.name} ADD COLUMN {column} bigint;"]
            if self.chance(0.6):
                statements += [
                    f"ALTER TABLE {table.name} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                    f"REFERENCES {parent.name} (id) NOT VALID;",
                    f"ALTER TABLE {table.name} VALIDATE CONSTRAINT {name};",
                ]
            else:
                statements.append(
                    f"ALTER TABLE {table.name} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                    f"REFERENCES {parent.name} (id);"
                )
            return statements
        column = self.rng.choice(table.columns)
        if roll < 0.7:
            check = f"{column} IS NOT NULL" if self.chance(0.5) else f"char_length({column}::text) < 200"
            not_valid = " NOT VALID" if self.chance(0.5) else ""
            return [f"ALTER TABLE {table.name} ADD CONSTRAINT {table.name}_{column}_chk CHECK ({check}){not_valid};"]
        if self.chance(0.5):
            index = f"{table.name}_{column}_key"
            return [
                f"CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table.name} ({column});",
                f"ALTER TABLE {table.name} ADD CONSTRAINT {index} UNIQUE USING INDEX {index};",
            ]
        return [f"ALTER TABLE {table.name} ADD CONSTRAINT {table.name}_{column}_uniq UNIQUE ({column});"]

    def create_index(self) -> list[str]:
        table = self.pick_table()
        columns = self.rng.sample(table.columns, k=min(len(table.columns), self.rng.randint(1, 2)))
        name = f"{table.name}_{'_'.join(columns)}_idx"
        concurrently = " CONCURRENTLY" if self.chance(0.55) else ""
        unique = "UNIQUE " if self.chance(0.15) else ""
        where = f" WHERE {columns[0]} IS NOT NULL" if self.chance(0.15) else ""
        return [
            f"CREATE {unique}INDEX{concurrently} IF NOT EXISTS {name} ON {table.name} ({', '.join(columns)}){where};"
        ]

    def update(self) -> list[str]:
        table = self.pick_table()
        column = self.rng.choice(table.columns[1:] or ["id"])
        target = self.rng.choice(table.columns)
        if self.chance(0.1):
            return [f"UPDATE {table.name} SET {column} = DEFAULT;"]  # risky: no WHERE
        condition = self.rng.choice(
            [
                f"{target} IS NULL",
                f"id BETWEEN {self.rng.randint(1, 5000)} AND {self.rng.randint(5001, 90000)}",
                f"created_at < now() - interval '{self.rng.randint(1, 365)} days'",
                f"{target} IN (SELECT {target} FROM {table.name} WHERE id < {self.rng.randint(10, 10000)})",
            ]
        )
        return [
            f"UPDATE {table.name} SET {column} = {self.rng.choice(STATUSES)}, "
            f"created_at = created_at WHERE {condition};"
        ]

    def delete(self) -> list[str]:
        table = self.pick_table()
        if self.chance(0.08):
            return [f"DELETE FROM {table.name};"]  # risky
        if self.chance(0.03):
            return [f"TRUNCATE {table.name};"]  # risky
        condition = self.rng.choice(
            [
                f"created_at < now() - interval '{self.rng.randint(30, 900)} days'",
                f"id = {self.rng.randint(1, 100000)}",
                f"{self.rng.choice(table.columns)} IS NULL",
            ]
        )
        return [f"DELETE FROM {table.name} WHERE {condition};"]

    def insert(self) -> list[str]:
        table = self.pick_table()
        columns = [c for c in table.columns if c not in ("id", "created_at") and not c.endswith("_id")][:3]
        if not columns:
            columns = [self.new_column(table)]
        rows = ", ".join(
            "(" + ", ".join(self.value("text") for _ in columns) + ")" for _ in range(self.rng.randint(1, 6))
        )
        if self.chance(0.07):
            return [f"INSERT INTO {table.name} VALUES ({', '.join(self.value('text') for _ in range(3))});"]  # risky
        conflict = " ON CONFLICT DO NOTHING" if self.chance(0.3) else ""
        return [f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {rows}{conflict};"]

    def misc(self) -> list[str]:
        table = self.pick_table()
        roll = self.rng.random()
        if roll < 0.2:
            column = self.rng.choice(table.columns)
            return [f"ALTER TABLE {table.name} ALTER COLUMN {column} SET NOT NULL;"]  # risky
        if roll < 0.35:
            index = f"{table.name}_{self.rng.choice(table.columns)}_idx"
            concurrently = " CONCURRENTLY" if self.chance(0.5) else ""
            return [f"DROP INDEX{concurrently} IF EXISTS {index};"]
        if roll < 0.45 and len(table.columns) > 3:
            column = table.columns.pop()
            return [f"ALTER TABLE {table.name} DROP COLUMN IF EXISTS {column};"]
        if roll < 0.55:
            old = table.columns[-1]
            new = old + "_old" if not old.endswith("_old") else old[:-4] + "_new"
            table.columns[-1] = new
            return [f"ALTER TABLE {table.name} RENAME COLUMN {old} TO {new};"]
        if roll < 0.65:
            return [f"SELECT * FROM {table.name} WHERE id = {self.rng.randint(1, 1000)};"]  # risky
        if roll < 0.8:
            column = self.rng.choice(table.columns)
            return [f"ALTER TABLE {table.name} ALTER COLUMN {column} SET DEFAULT {self.rng.choice(STATUSES)};"]
        if roll < 0.9:
            return [
                f"COMMENT ON COLUMN {table.name}.{self.rng.choice(table.columns)} "
                f"IS 'see ticket #{self.rng.randint(100, 9999)}';"
            ]
        return [f"ANALYZE {table.name};"]

    def migration(self, number: int) -> tuple[str, str, int]:
        """(file name, SQL, statement count) of migration `number`."""
        statements: list[str] = []
        if self.chance(0.4):
            statements.append(f"SET lock_timeout = '{self.rng.choice(['2s', '5s', '10s'])}';")
        title = "change"
        if not self.tables or number <= 8 or self.chance(0.25):
            for _ in range(self.rng.randint(1, 3)):
                statements += self.create_table()
            title = f"create_{self.tables[-1].name}"
        kinds = [
            self.add_column,
            self.add_constraint,
            self.create_index,
            self.update,
            self.delete,
            self.insert,
            self.misc,
        ]
        weights = [5, 2, 3, 3, 2, 3, 2]
        for _ in range(self.rng.randint(6, 22)):
            statements += self.rng.choices(kinds, weights)[0]()
        if title == "change":
            title = f"alter_{self.tables[-1].name}" if self.tables else "change"
        wrap = self.chance(0.15) and not any("CONCURRENTLY" in s for s in statements)
        count = len(statements) + (2 if wrap else 0)
        body = "\n\n".join(statements)
        if wrap:
            body = f"BEGIN;\n\n{body}\n\nCOMMIT;"
        header = f"-- Migration {number:04d}: {title.replace('_', ' ')}\n-- generated by bench/corpus.py\n\n"
        return f"V{number:04d}__{title}.sql", header + body + "\n", count


def write_corpus(directory: Path, files: int = 140, seed: int = 20240607) -> Corpus:
    directory.mkdir(parents=True, exist_ok=True)
    generator = Generator(seed)
    paths: list[Path] = []
    total = 0
    for number in range(1, files + 1):
        name, sql, count = generator.migration(number)
        path = directory / name
        path.write_text(sql)
        paths.append(path)
        total += count
    return Corpus(paths, total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--files", type=int, default=140)
    parser.add_argument("--seed", type=int, default=20240607)
    args = parser.parse_args(argv)
    corpus = write_corpus(args.directory, args.files, args.seed)
    print(f"{len(corpus.files)} files, {corpus.statements} statements in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
