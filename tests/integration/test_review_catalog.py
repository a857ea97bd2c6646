"""The review asks the target's catalog how volatile a DEFAULT's function is (pg_proc.provolatile)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy.engine import make_url

from plancheck.checks.advise import ReviewConfig
from plancheck.checks.check import check_target
from plancheck.checks.result import CheckType
from plancheck.checks.session import libpq_url, open_target_session
from plancheck.checks.target import Target

ADD_COLUMN = "SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN code text DEFAULT {call};\n"


@pytest.fixture(scope="module")
def target(create_database: Callable[[str], str]) -> Target:
    url = create_database("volatile")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE FUNCTION app.make_code() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT 'x' $$")
        conn.execute("CREATE FUNCTION region() RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'eu' $$")
        conn.execute("CREATE FUNCTION now() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT 'shadow' $$")
    return Target("pg", make_url(url).database or "", "test", url)


def titles(target: Target, call: str) -> list[str]:
    results = check_target(target, ADD_COLUMN.format(call=call), ReviewConfig())
    return [r.title for r in results if r.type == CheckType.STATEMENT_ADVISE]


def test_the_target_catalog_decides_volatility(target: Target) -> None:
    assert titles(target, "app.make_code()") == ["column.no-volatile-default"]  # unknown to the built-in table
    assert titles(target, "region()") == ["OK"]
    assert titles(target, "gen_random_uuid()::text") == ["column.no-volatile-default"]
    assert titles(target, "now()::text") == ["OK"]  # pg_catalog comes first on the search_path
    assert titles(target, "public.now()") == ["column.no-volatile-default"]  # the VOLATILE one in public


def test_function_volatility_reads_pg_proc(target: Target) -> None:
    with open_target_session(target) as session:
        assert session.function_volatility("app", "make_code") == "v"
        assert session.function_volatility(None, "make_code") is None  # app is not on the search_path
        assert session.function_volatility(None, "region") == "s"
        assert session.function_volatility(None, "lower") == "i"
        assert session.function_volatility("pg_catalog", "clock_timestamp") == "v"
        assert session.function_volatility(None, "no_such_function") is None
