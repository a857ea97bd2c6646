"""API tokens without a database: format, hashing, constant-time checks, scopes and durations."""

from __future__ import annotations

import hmac
from datetime import timedelta

import pytest

from plancheck.core.errors import Forbidden, InvalidInput
from plancheck.domain import access
from plancheck.domain.access import Grant, Scope


def test_a_new_token_is_random_recognisable_and_stored_only_as_its_hash() -> None:
    first, second = access.new_token(), access.new_token()
    assert first.token != second.token and first.key_id != second.key_id
    assert first.token.startswith("pct_") and access.key_id_of(first.token) == first.key_id
    assert first.secret_hash == access.hash_token(first.token)
    assert first.token not in first.secret_hash and len(first.secret_hash) == 64
    assert len(first.token) == len("pct_") + 12 + 1 + 43  # key id, then 32 random bytes


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "pct_",
        "Bearer pct_abc",
        "pct_0123456789ab",
        "pct_0123456789AB_" + "a" * 43,
        "pct_0123456789ab_" + "a" * 42,
        "pct_0123456789ab_" + "a" * 43 + "\n",
        "xyz_0123456789ab_" + "a" * 43,
    ],
)
def test_malformed_tokens_have_no_key_id(presented: str) -> None:
    assert access.key_id_of(presented) is None


def test_matches_only_the_exact_token() -> None:
    made = access.new_token()
    assert access.matches(made.token, made.secret_hash)
    assert not access.matches(made.token[:-1] + ("A" if made.token[-1] != "A" else "B"), made.secret_hash)
    assert not access.matches(made.token, None)


def test_the_comparison_is_constant_time_for_known_and_unknown_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both a wrong and an unknown token go through hmac.compare_digest on hashes of equal length."""
    calls: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    made = access.new_token()
    access.matches(made.token, made.secret_hash)
    access.matches(access.new_token().token, made.secret_hash)
    access.matches(made.token, None)
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_scopes_nest() -> None:
    assert [scope for scope in Scope if scope.includes(Scope.READ)] == [Scope.READ, Scope.SUBMIT, Scope.ADMIN]
    assert [scope for scope in Scope if scope.includes(Scope.SUBMIT)] == [Scope.SUBMIT, Scope.ADMIN]
    assert [scope for scope in Scope if scope.includes(Scope.ADMIN)] == [Scope.ADMIN]


@pytest.mark.parametrize(
    ("scope", "limited_to", "needed", "project", "allowed"),
    [
        (Scope.READ, None, Scope.READ, "shop", True),
        (Scope.READ, None, Scope.SUBMIT, "shop", False),
        (Scope.SUBMIT, None, Scope.SUBMIT, None, True),
        (Scope.ADMIN, None, Scope.SUBMIT, "shop", True),
        (Scope.SUBMIT, "shop", Scope.SUBMIT, "shop", True),
        (Scope.SUBMIT, "shop", Scope.READ, "other", False),
        (Scope.ADMIN, "shop", Scope.READ, None, False),  # spans every project
    ],
)
def test_grant_requires_scope_and_project(
    scope: Scope, limited_to: str | None, needed: Scope, project: str | None, allowed: bool
) -> None:
    grant = Grant(1, "ci", scope, limited_to)
    if allowed:
        grant.require(needed, project)
    else:
        with pytest.raises(Forbidden, match="token 'ci'"):
            grant.require(needed, project)


def test_can_see() -> None:
    assert Grant(1, "a", Scope.READ, None).can_see("x")
    assert Grant(1, "a", Scope.READ, "x").can_see("x")
    assert not Grant(1, "a", Scope.READ, "x").can_see("y")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        (" 1d ", timedelta(days=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert access.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1.5d", "5y", "90 d", "3651d", "9999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        access.parse_duration(text)


def test_scopes_parse() -> None:
    assert access.parse_scope("submit") is Scope.SUBMIT
    with pytest.raises(InvalidInput, match="read, submit, admin"):
        access.parse_scope("root")
