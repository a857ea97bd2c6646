"""`instance sync` against a real server that also holds plancheck's metadata database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url

from plancheck.api import Plancheck
from plancheck.core.errors import InvalidInput


def _name(url: str) -> str:
    return make_url(url).database or ""


def test_sync_skips_the_metadata_database_and_keeps_what_was_registered(
    api: Plancheck, plancheck_env: dict[str, str], create_database: Callable[[str], str]
) -> None:
    staging, prod = _name(create_database("sync_staging")), _name(create_database("sync_prod"))
    metadata = _name(plancheck_env["PLANCHECK_DATABASE_URL"])
    api.create_project("shop")
    # The instance is the metadata database's server, reached by another URL than PLANCHECK_DATABASE_URL.
    api.add_instance("server", plancheck_env["PLANCHECK_DATABASE_URL"].replace(metadata, "postgres"), "prod")

    first = api.sync_instance("server", "shop", include=[metadata, "pc_sync_*"])
    assert sorted(first.added) == sorted([staging, prod]) and first.kept == []
    assert first.skipped == {metadata: "the metadata database"}
    assert {d["target"]: d["environment"] for d in api.list_databases("shop")} == {
        f"server/{staging}": "prod",
        f"server/{prod}": "prod",
    }

    api.set_database(f"server/{staging}", environment="test", labels={"tier": "silver"})
    fresh = _name(create_database("sync_fresh"))
    again = api.sync_instance(
        "server", "shop", environment="staging", include=["pc_sync_*"], exclude=["pc_sync_prod_*"]
    )
    assert again.added == [fresh] and again.kept == [staging] and again.skipped == {prod: "excluded"}
    listed = {d["target"]: (d["environment"], d["labels"]) for d in api.list_databases("shop")}
    assert listed == {
        f"server/{staging}": ("test", {"tier": "silver"}),  # kept, not stamped with the instance's prod
        f"server/{prod}": ("prod", {}),
        f"server/{fresh}": ("staging", {}),  # new: the environment given to sync
    }
    assert again.to_json()["databases"] == [fresh, staging]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"include": ["x" * 129]}, "--include pattern"),
        ({"exclude": [""]}, "--exclude pattern"),
        ({"include": ["a\x1b[2J"]}, "printable"),
        ({"include": [f"p{i}" for i in range(33)]}, "at most 32 --include patterns"),
        ({"environment": "pro d"}, "environment 'pro d'"),
    ],
)
def test_bad_sync_options_are_refused(
    api: Plancheck, plancheck_env: dict[str, str], arguments: dict[str, object], message: str
) -> None:
    api.add_instance("server", plancheck_env["PLANCHECK_DATABASE_URL"])
    with pytest.raises(InvalidInput, match=message):
        api.sync_instance("server", **arguments)  # type: ignore[arg-type]
    assert api.list_databases() == []
