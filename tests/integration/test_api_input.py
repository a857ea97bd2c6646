"""Bad input to the Python API: a clear error, and the database left exactly as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from plancheck.api import Plancheck
from plancheck.core.errors import Conflict, InvalidInput, NotFound, PlancheckError
from plancheck.core.settings import Settings
from tests.integration.helpers import TargetDatabase, make_target, register_target

MAX_SQL_BYTES = Settings().max_sql_bytes

TABLES = ("project", "instance", "database", "database_group", "sheet", "plan", "plan_check_run", "outbox")


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    return register_target(api, *make_target(create_database, rows=10))


def _counts(api: Plancheck) -> dict[str, int]:
    with api.engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES}


BAD_PLANS: list[tuple[str, dict[str, object], type[PlancheckError], str]] = [
    ("empty SQL", {"sql": b"  \n"}, InvalidInput, "empty"),
    ("non-UTF-8", {"sql": b"SELECT '\xff\xfe';"}, InvalidInput, "not UTF-8"),
    ("NUL bytes", {"sql": b"SELECT 1;\x00DROP TABLE x;"}, InvalidInput, "NUL"),
    ("binary file", {"sql": bytes(range(256)) * 4}, InvalidInput, "UTF-8"),
    ("huge file", {"sql": b"-" * (MAX_SQL_BYTES + 1)}, InvalidInput, "limit"),
    ("unknown project", {"project": "nope"}, NotFound, "project 'nope' not found"),
    ("unknown target", {"targets": ["local/missing_db"]}, NotFound, "local/missing_db"),
    ("malformed target", {"targets": ["just-a-name"]}, InvalidInput, "instance/database"),
    ("unknown group", {"targets": [], "group": "nope"}, NotFound, "group 'nope' not found"),
    ("targets and group", {"group": "g"}, InvalidInput, "either targets"),
    ("no target at all", {"targets": []}, InvalidInput, "either targets"),
    ("10,001 targets", {"targets": [f"i/db{n}" for n in range(10_001)]}, InvalidInput, "at most 10,000"),
    ("a target twice", {"targets": ["i/a", "i/a"]}, InvalidInput, "twice"),
]


@pytest.mark.parametrize(("case", "overrides", "error", "message"), BAD_PLANS, ids=[case[0] for case in BAD_PLANS])
def test_bad_plans_are_refused_and_nothing_is_written(
    api: Plancheck,
    target: TargetDatabase,
    case: str,
    overrides: dict[str, object],
    error: type[PlancheckError],
    message: str,
) -> None:
    arguments: dict[str, object] = {"project": "shop", "sql": b"SELECT 1;", "targets": [target.target], **overrides}
    before = _counts(api)
    with pytest.raises(error, match=message) as raised:
        api.create_plan(**arguments)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
    assert _counts(api) == before


def test_ten_thousand_targets_are_accepted_when_registered_then_refused_past_the_cap(
    api: Plancheck, target: TargetDatabase
) -> None:
    with api.engine.begin() as conn:
        instance_id = conn.execute(text("SELECT id FROM instance WHERE key = 'local'")).scalar_one()
        project_id = conn.execute(text("SELECT id FROM project WHERE key = 'shop'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO database (instance_id, name, environment, project_id) "
                "SELECT :i, 'tenant_' || g, 'test', :p FROM generate_series(1, 10000) g"
            ),
            {"i": instance_id, "p": project_id},
        )
    plan_id = api.create_plan("shop", b"SELECT 1;", targets=[f"local/tenant_{n}" for n in range(1, 10_001)])
    assert api.checks(plan_id).status in ("AVAILABLE", "RUNNING")


def test_unknown_ids_and_bad_urls_and_expressions(api: Plancheck, target: TargetDatabase) -> None:
    before = _counts(api)
    with pytest.raises(NotFound, match="plan 424242 not found"):
        api.checks(424242)
    with pytest.raises(NotFound, match="plan 424242 not found"):
        api.cancel([424242])
    with pytest.raises(NotFound, match="plan 424242 not found"):
        api.rerun(424242)
    with pytest.raises(NotFound, match="issue 99 not found"):
        api.approve_issue(99)
    with pytest.raises(InvalidInput, match="postgresql://"):
        api.add_instance("bad", "mysql://root@localhost/x")
    with pytest.raises(InvalidInput, match="postgresql://"):
        api.add_instance("bad", "not a url")
    with pytest.raises(Conflict, match="instance 'local' already exists"):
        api.add_instance("local", target.url)
    with pytest.raises(InvalidInput, match="group 'g'"):
        api.create_group("shop", "g", 'resource.database_name.startsWith("a"')
    with pytest.raises(InvalidInput, match="group 'g'"):
        api.create_group("shop", "g", "resource.no_such_field == 1")
    with pytest.raises(InvalidInput, match="project settings"):
        api.create_project("p2", settings={"sql_review": {"rules": {"no.such-rule": {"level": "ERROR"}}}})
    assert _counts(api) == before
