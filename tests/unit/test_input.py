"""Bad input to the Python API, refused at the edge with one line that says what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from plancheck.api import inputs
from plancheck.api.inputs import decode_sql as decode
from plancheck.api.inputs import globs, identifier, row_id
from plancheck.checks.advise import ReviewConfig, review
from plancheck.checks.project_settings import validate_project_settings
from plancheck.core.errors import MAX_ID, InvalidInput

LIMIT = 16 * 1024 * 1024


def decode_sql(data: bytes) -> str:
    return decode(data, LIMIT)


def test_a_byte_order_mark_is_stripped_not_a_syntax_error() -> None:
    sql = decode_sql(b"\xef\xbb\xbfCREATE TABLE t (id bigint PRIMARY KEY);\n")
    assert sql == "CREATE TABLE t (id bigint PRIMARY KEY);\n"
    assert [r.code for r in review(sql, "t", ReviewConfig()) if r.status == "ERROR"] == []
    with pytest.raises(InvalidInput, match="empty"):
        decode_sql(b"\xef\xbb\xbf \n")


@pytest.mark.parametrize("value", [0, -1, MAX_ID + 1, 10**20, True, "1", 1.0, None])
def test_ids_are_bigints(value: Any) -> None:
    with pytest.raises(InvalidInput, match=f"plan id must be a whole number from 1 to {MAX_ID}"):
        row_id(value, "plan")


def test_ids_in_range_pass() -> None:
    assert row_id(1, "plan") == 1 and row_id(MAX_ID, "plan") == MAX_ID


@pytest.mark.parametrize("key", ["", "a b", "café", "x" * 64, "a/b", "a.b", "\x1b[2J", "naïve", None, 5])
def test_keys_are_bounded_ascii(key: Any) -> None:
    with pytest.raises(InvalidInput, match=r"project key .* must be 1 to 63 ASCII letters, digits, '-' or '_'") as e:
        identifier(key, "project key")
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


@pytest.mark.parametrize("key", ["a", "shop", "Shop-2_prod", "x" * 63])
def test_good_keys_pass(key: str) -> None:
    assert identifier(key, "project key") == key


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({f"k{i}": "v" for i in range(65)}, "at most 64 labels"),
        ({"": "v"}, "label key ''"),
        ({"-x": "v"}, "starting with a letter or digit"),
        ({"a b": "v"}, "label key 'a b'"),
        ({"tier": "x" * 256}, "at most 255 characters"),
        ({"tier": 5}, "must be text"),
    ],
)
def test_labels_are_bounded(labels: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        inputs.labels(labels)


def test_good_labels_pass() -> None:
    labels = {"tier": "gold", "team/payments": "core", "k8s.io_name": "x" * 255}
    assert inputs.labels(labels) == labels


@pytest.mark.parametrize(
    ("patterns", "message"),
    [(["x" * 129], "1 to 128 printable"), ([""], "1 to 128"), (["a\nb"], "printable"), (["*"] * 33, "at most 32")],
)
def test_sync_patterns_are_bounded(patterns: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        globs(patterns, "--include")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ci_sampling_size": -1}, "ci_sampling_size must be greater than or equal to 0, got -1"),
        ({"ci_sampling_size": 1.5}, "ci_sampling_size must be a whole number, got 1.5"),
        ({"ci_sampling_size": True}, "ci_sampling_size must be a whole number, got True"),
        ({"risk_affected_rows": "lots"}, "risk_affected_rows must be a whole number, got 'lots'"),
        ({"risk_affected_rows": -5}, "risk_affected_rows must be greater than or equal to 0"),
        ({"colour": "blue"}, "unknown setting 'colour' (expected sql_review, ci_sampling_size, risk_affected_rows)"),
        ({"sql_review": []}, "sql_review must be a JSON object"),
        ({"sql_review": {"rulez": {}}}, "unknown setting 'sql_review.rulez' (expected rules)"),
        ({"sql_review": {"rules": {"naming.table": "ERROR"}}}, "sql_review.rules.naming.table must be a JSON object"),
        ({"sql_review": {"rules": {"no.such-rule": {"level": "ERROR"}}}}, "unknown sql_review rule 'no.such-rule'"),
        ({"sql_review": {"rules": {"naming.table": {"level": "LOUD"}}}}, "LOUD"),
        ([1], "settings must be a JSON object"),
    ],
)
def test_project_settings_follow_the_schema(settings: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        validate_project_settings(settings)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_valid_project_settings_pass() -> None:
    settings = {
        "sql_review": {"rules": {"statement.affected-row-limit": {"max_rows": 5000, "level": "ERROR"}}},
        "ci_sampling_size": 0,
        "risk_affected_rows": 10_000,
    }
    assert validate_project_settings(settings) == settings
    assert validate_project_settings({}) == {}
