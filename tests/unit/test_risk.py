"""plancheck.domain.risk.assess: ERROR -> HIGH, DDL on prod -> HIGH, affected rows over threshold -> HIGH,
warnings -> MEDIUM, else LOW. Pure logic: no database, no Celery."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plancheck.domain.risk import APPROVERS, DEFAULT_AFFECTED_ROWS_THRESHOLD, assess

THRESHOLD = 1000
ENVIRONMENTS = {"inst/prod_db": "prod", "inst/test_db": "test"}


def result(
    target: str = "inst/test_db",
    status: str = "SUCCESS",
    title: str = "OK",
    statement_types: dict[str, int] | None = None,
    affected_rows: int | None = 0,
    summary: bool = True,
) -> dict[str, Any]:
    report = {"statement_types": statement_types or {}, "affected_rows": affected_rows} if summary else None
    return {"target": target, "status": status, "title": title, "report": report}


def test_no_results_is_low_without_approvers() -> None:
    approval = assess([], ENVIRONMENTS, THRESHOLD)
    assert (approval.risk, approval.approvers, approval.reasons) == ("LOW", [], [])


def test_clean_results_are_low() -> None:
    approval = assess([result(statement_types={"UPDATE": 2}, affected_rows=10)], ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "LOW"
    assert approval.approvers == APPROVERS["LOW"] == []


def test_an_error_is_high_and_names_target_and_title() -> None:
    approval = assess([result(status="ERROR", title="Lock timeout on target")], ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "HIGH"
    assert approval.approvers == ["project-owner", "dba"]
    assert approval.reasons == ["inst/test_db: Lock timeout on target"]


@pytest.mark.parametrize(
    "kind", ["CREATE_TABLE", "CREATE_INDEX", "ALTER_TABLE", "DROP_TABLE", "DROP_INDEX", "RENAME", "TRUNCATE", "COMMENT"]
)
def test_ddl_on_prod_is_high(kind: str) -> None:
    approval = assess([result("inst/prod_db", statement_types={kind: 1})], ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "HIGH"
    assert approval.reasons == [f"inst/prod_db: DDL ({kind}) on a prod database"]


def test_ddl_reason_lists_every_ddl_kind_sorted() -> None:
    types = {"DROP_TABLE": 1, "ALTER_TABLE": 2, "UPDATE": 3}
    approval = assess([result("inst/prod_db", statement_types=types)], ENVIRONMENTS, THRESHOLD)
    assert approval.reasons == ["inst/prod_db: DDL (ALTER_TABLE, DROP_TABLE) on a prod database"]


@pytest.mark.parametrize("target", ["inst/test_db", "inst/unknown_db"])
def test_ddl_outside_prod_is_not_high(target: str) -> None:
    approval = assess([result(target, statement_types={"ALTER_TABLE": 1})], ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "LOW"


def test_dml_on_prod_is_not_high() -> None:
    types = {"UPDATE": 1, "DELETE": 1, "INSERT": 1, "SELECT": 1}
    assert assess([result("inst/prod_db", statement_types=types)], ENVIRONMENTS, THRESHOLD).risk == "LOW"


@pytest.mark.parametrize(("rows", "risk"), [(THRESHOLD - 1, "LOW"), (THRESHOLD, "LOW"), (THRESHOLD + 1, "HIGH")])
def test_affected_rows_over_threshold_is_high(rows: int, risk: str) -> None:
    approval = assess([result(affected_rows=rows)], ENVIRONMENTS, THRESHOLD)
    assert approval.risk == risk
    if risk == "HIGH":
        assert approval.reasons == [f"inst/test_db: ~{rows} affected rows exceeds {THRESHOLD}"]


def test_default_threshold_is_used_as_given() -> None:
    rows = DEFAULT_AFFECTED_ROWS_THRESHOLD + 1
    assert assess([result(affected_rows=rows)], ENVIRONMENTS, DEFAULT_AFFECTED_ROWS_THRESHOLD).risk == "HIGH"


def test_warnings_are_medium_and_counted() -> None:
    results = [result(status="WARNING", summary=False), result(status="WARNING", summary=False), result()]
    approval = assess(results, ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "MEDIUM"
    assert approval.approvers == ["project-owner"]
    assert approval.reasons == ["2 warning(s)"]


def test_high_outranks_warnings_and_collects_every_reason() -> None:
    results = [
        result(status="WARNING", summary=False),
        result("inst/prod_db", status="ERROR", title="Syntax error", summary=False),
        result("inst/prod_db", statement_types={"DROP_TABLE": 1}, affected_rows=THRESHOLD * 5),
    ]
    approval = assess(results, ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "HIGH"
    assert approval.reasons == [
        "inst/prod_db: Syntax error",
        "inst/prod_db: DDL (DROP_TABLE) on a prod database",
        f"inst/prod_db: ~{THRESHOLD * 5} affected rows exceeds {THRESHOLD}",
    ]


def test_missing_report_or_rows_are_tolerated() -> None:
    results = [result(summary=False), result(affected_rows=None), {"status": "SUCCESS"}]
    assert assess(results, ENVIRONMENTS, THRESHOLD).risk == "LOW"


def uncertain(target: str = "inst/test_db", affected_rows: int = 10) -> dict[str, Any]:
    guess = result(target, statement_types={"UPDATE": 1}, affected_rows=affected_rows)
    guess["report"].update(estimate_reliable=False, estimate_doubts=["UPDATE: it depends on a subquery"])
    return guess


def test_an_estimate_that_cannot_be_trusted_is_never_low() -> None:
    approval = assess([uncertain()], ENVIRONMENTS, THRESHOLD)
    assert (approval.risk, approval.approvers) == ("MEDIUM", ["project-owner"])
    assert approval.reasons == ["inst/test_db: ~10 affected rows is a guess (UPDATE: it depends on a subquery)"]
    both = assess([uncertain(), result(status="WARNING", summary=False)], ENVIRONMENTS, THRESHOLD)
    assert both.risk == "MEDIUM" and both.reasons[0] == "1 warning(s)" and len(both.reasons) == 2
    assert assess([uncertain(affected_rows=THRESHOLD + 1)], ENVIRONMENTS, THRESHOLD).risk == "HIGH"


def test_accepts_any_iterable_once() -> None:
    approval = assess((r for r in [result(status="ERROR")]), ENVIRONMENTS, THRESHOLD)
    assert approval.risk == "HIGH"


# -- properties ---------------------------------------------------------------------------------------
KINDS = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE_TABLE", "ALTER_TABLE", "DROP_INDEX", "TRUNCATE", "COMMENT"]
results_strategy = st.lists(
    st.builds(
        result,
        target=st.sampled_from(["inst/prod_db", "inst/test_db", "inst/other"]),
        status=st.sampled_from(["SUCCESS", "WARNING", "ERROR"]),
        title=st.text(max_size=10),
        statement_types=st.dictionaries(st.sampled_from(KINDS), st.integers(1, 5), max_size=4),
        affected_rows=st.one_of(st.none(), st.integers(0, 3 * THRESHOLD)),
        summary=st.booleans(),
    ),
    max_size=8,
)


def _expected(results: list[dict[str, Any]]) -> str:
    def high(r: dict[str, Any]) -> bool:
        report = r["report"] or {}
        ddl = any(
            k.startswith(("CREATE_", "ALTER_", "DROP_", "RENAME", "TRUNCATE", "COMMENT"))
            for k in report.get("statement_types", {})
        )
        return (
            r["status"] == "ERROR"
            or (ddl and ENVIRONMENTS.get(r["target"]) == "prod")
            or (report.get("affected_rows") or 0) > THRESHOLD
        )

    if any(high(r) for r in results):
        return "HIGH"
    return "MEDIUM" if any(r["status"] == "WARNING" for r in results) else "LOW"


@given(results_strategy)
def test_risk_follows_the_rules(results: list[dict[str, Any]]) -> None:
    approval = assess(results, ENVIRONMENTS, THRESHOLD)
    assert approval.risk == _expected(results)
    assert approval.approvers == APPROVERS[approval.risk]
    assert bool(approval.reasons) == (approval.risk != "LOW")


@given(results_strategy, st.lists(st.sampled_from(["inst/prod_db", "inst/test_db"]), min_size=1, max_size=3))
def test_a_guess_raises_any_risk_to_at_least_medium(results: list[dict[str, Any]], guessed: list[str]) -> None:
    approval = assess([*results, *(uncertain(target) for target in guessed)], ENVIRONMENTS, THRESHOLD)
    assert approval.risk in ("MEDIUM", "HIGH")
    assert approval.risk == ("HIGH" if _expected(results) == "HIGH" else "MEDIUM")


@given(results_strategy)
def test_assess_is_pure(results: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(results)
    environments = dict(ENVIRONMENTS)
    first = assess(results, environments, THRESHOLD)
    assert results == before and environments == ENVIRONMENTS
    assert assess(results, environments, THRESHOLD) == first
    assert assess(list(reversed(results)), environments, THRESHOLD).risk == first.risk
