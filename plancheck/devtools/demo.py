"""The demo: sample shop databases, a project with a group, and three plans (safe, risky, broken).

Everything here goes through the Python API except the sample data itself, which is written
straight to the embedded server. Re-running reuses the project, instance, group and databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from plancheck.api import Checks, Plancheck
from plancheck.core.errors import Conflict

PROJECT = "demo"
INSTANCE = "demo-pg"
GROUP = "shop"
GROUP_EXPRESSION = 'resource.database_name.startsWith("shop_")'
PROJECT_SETTINGS: dict[str, object] = {
    "sql_review": {"rules": {"statement.select-no-select-all": {"level": "ERROR"}}},
    "risk_affected_rows": 10_000,
}
WAIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class SampleDatabase:
    name: str
    environment: str
    labels: dict[str, str]
    customers: int
    orders: int
    items: int


DATABASES = (
    SampleDatabase("shop_staging", "test", {"app": "shop", "tier": "staging"}, 800, 2_000, 5_000),
    SampleDatabase("shop_prod", "prod", {"app": "shop", "tier": "prod"}, 4_000, 12_000, 30_000),
)

SCHEMA_SQL = """
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text,
    name text NOT NULL,
    status text NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL,
    total_cents integer NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE order_items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    sku text NOT NULL,
    quantity integer NOT NULL,
    price_cents integer NOT NULL
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX order_items_order_id_idx ON order_items (order_id);
INSERT INTO customers (email, name, status, created_at)
SELECT CASE WHEN i % 40 = 0 THEN NULL ELSE 'customer' || i || '@example.com' END,
       'Customer ' || i,
       CASE WHEN i % 9 = 0 THEN 'inactive' ELSE 'active' END,
       now() - make_interval(hours => i)
FROM generate_series(1, {customers}) AS i;
INSERT INTO orders (customer_id, status, total_cents, created_at)
SELECT 1 + (i::bigint * 7919) % {customers},
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'refunded'])[1 + i % 5],
       500 + (i::bigint * 37) % 20000,
       now() - make_interval(mins => i * 13)
FROM generate_series(1, {orders}) AS i;
INSERT INTO order_items (order_id, sku, quantity, price_cents)
SELECT 1 + (i::bigint * 104729) % {orders},
       'SKU-' || lpad(((i * 31) % 500)::text, 4, '0'),
       1 + i % 4,
       199 + (i::bigint * 53) % 9000
FROM generate_series(1, {items}) AS i;
"""


@dataclass(frozen=True)
class DemoPlan:
    title: str
    sql: str
    targets: tuple[str, ...] = ()
    group: str | None = None


PLANS = (
    DemoPlan(
        "Add a coupons table (safe)",
        """\
CREATE TABLE coupons (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL,
    discount_percent integer NOT NULL CHECK (discount_percent BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX uk_coupons_code ON coupons (code);
""",
        group=GROUP,
    ),
    DemoPlan(
        "Order clean-up (risky)",
        """\
DELETE FROM order_items;
UPDATE customers SET status = 'inactive';
ALTER TABLE orders ADD COLUMN tracking_token text DEFAULT md5(random()::text);
CREATE INDEX orders_created_at_idx ON orders (created_at);
ALTER TABLE customers ALTER COLUMN email SET NOT NULL;
""",
        group=GROUP,
    ),
    DemoPlan(
        "Gift notes (syntax error)",
        """\
ALTER TABLE orders ADD COLUMN gift_note text;
UPDATE orders SET gift_note = 'none' WHERE status = 'pending';
SELEC id, gift_note FROM orders;
""",
        targets=(f"{INSTANCE}/shop_staging",),
    ),
)


@dataclass
class DemoRun:
    plan: DemoPlan
    plan_id: int
    checks: Checks | None = field(default=None)


def seed(server_url: str, database: SampleDatabase) -> bool:
    """Create and fill one sample database unless it is already there; True when created now."""
    from plancheck.core.settings import sqlalchemy_url
    from plancheck.devtools.dev import ensure_database

    url = ensure_database(server_url, database.name)
    libpq = url.replace(sqlalchemy_url("postgresql://"), "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.order_items')").fetchone() != (None,):
            return False
        with conn.transaction():
            conn.execute(
                SCHEMA_SQL.format(customers=database.customers, orders=database.orders, items=database.items).encode()
            )
        conn.execute("ANALYZE")
    return True


def _ignore_conflict(action: Callable[[], object]) -> None:
    with contextlib.suppress(Conflict):
        action()


def prepare(api: Plancheck, server_url: str, say: Callable[[str], None] = lambda message: None) -> None:
    """Sample databases, the demo project, instance, database settings and group (reused if present)."""
    for database in DATABASES:
        if seed(server_url, database):
            say(
                f"created sample database {database.name} ({database.customers:,} customers, "
                f"{database.orders:,} orders, {database.items:,} order items)"
            )
    _ignore_conflict(lambda: api.create_project(PROJECT, "Demo shop", PROJECT_SETTINGS))
    _ignore_conflict(lambda: api.add_instance(INSTANCE, server_url, "test"))
    api.sync_instance(INSTANCE)
    for database in DATABASES:
        api.set_database(f"{INSTANCE}/{database.name}", PROJECT, database.environment, database.labels)
    _ignore_conflict(lambda: api.create_group(PROJECT, GROUP, GROUP_EXPRESSION))
    say(f"project {PROJECT!r}: group {GROUP!r} = {GROUP_EXPRESSION}")


def submit(api: Plancheck) -> list[DemoRun]:
    """Create the three plans at once, so their checks run side by side."""
    return [
        DemoRun(plan, api.create_plan(PROJECT, plan.sql.encode(), plan.targets, plan.group, plan.title))
        for plan in PLANS
    ]
