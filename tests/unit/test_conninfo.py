"""Connection URLs read into libpq keywords: odd passwords survive, bad ports are clear, nothing leaks."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from plancheck.checks.instance import resolve_url, validate_url
from plancheck.checks.target import TargetError
from plancheck.core.conninfo import InvalidURL, connection_params, conninfo, display_url, engine_url, password_forms
from plancheck.core.redact import MASK, error_line, redact, url_secrets
from plancheck.core.settings import SettingsError, load_settings

TOKEN = "7f3a9c"
# Every character that broke or leaked somewhere, each segment carrying the token so a partial leak shows.
ODD = f"A{TOKEN} B{TOKEN}@C{TOKEN}:D{TOKEN}/E{TOKEN}%G{TOKEN}'F{TOKEN}\"H{TOKEN}\\I{TOKEN}é{TOKEN}ü"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{quote(ODD, safe='')}@db.example:6543/app",  # percent-encoded, as it should be
        f"postgresql://alice:{ODD}@db.example:6543/app",  # pasted as is: the last @ ends the password
        f"postgresql+psycopg://alice:{ODD}@db.example:6543/app",
        f"postgres://alice:{quote(ODD)}@db.example:6543/app",  # '/' left unencoded by quote()
    ],
)
def test_odd_passwords_are_read_exactly(url: str) -> None:
    params = connection_params(url)
    assert params == {"user": "alice", "password": ODD, "host": "db.example", "port": "6543", "dbname": "app"}
    assert conninfo_to_dict(conninfo(url)) == params  # the key=value string libpq reads back is exact
    built = engine_url(url)
    assert (built.username, built.password, built.database, dict(built.query)) == (
        "alice",
        ODD,
        "app",
        {"host": "db.example", "port": "6543"},
    )


def test_hosts_sockets_ipv6_queries_and_keyword_strings() -> None:
    assert connection_params("postgresql://u@h1:5432,h2:5433/db") == {
        "user": "u",
        "host": "h1,h2",
        "port": "5432,5433",
        "dbname": "db",
    }
    assert connection_params("postgresql://u@[::1]:5432/db") == {
        "user": "u",
        "host": "::1",
        "port": "5432",
        "dbname": "db",
    }
    assert connection_params("postgresql://postgres:@/app?host=/tmp/pg%20dir&options=-c%20x%3Dy") == {
        "user": "postgres",
        "dbname": "app",
        "host": "/tmp/pg dir",
        "options": "-c x=y",
    }
    assert connection_params("host=db user=u password='a b\\'c'") == {"host": "db", "user": "u", "password": "a b'c"}
    assert conninfo("postgresql://u@h/db", dbname="other", connect_timeout=3) == (
        "user=u host=h dbname=other connect_timeout=3"
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"postgresql://u:{ODD}@h:99999/db", "invalid port"),
        (f"postgresql://u:{ODD}@h:abc/db", "invalid port"),
        (f"postgresql://u:{ODD}@h:0/db", "invalid port"),
        ("postgresql://u@h/db?port=70000", "invalid port"),
        (f"mysql://u:{ODD}@h/db", "not mysql://"),
        ("not a url", "postgresql://"),
        (f"host=h password='{TOKEN}", "neither a URL"),  # unterminated quote
        (f"postgresql://u:pa?ss{TOKEN}@h/db", "malformed query"),  # an unencoded '?' starts the query
        (f"postgresql://u:{ODD}@[::1/db", "IPv6"),
    ],
)
def test_bad_urls_say_why_without_repeating_the_url(url: str, fragment: str) -> None:
    with pytest.raises(InvalidURL) as raised:
        connection_params(url)
    assert fragment in str(raised.value)
    assert TOKEN not in str(raised.value) and "invalid literal" not in str(raised.value)
    with pytest.raises(ValueError) as as_instance:
        validate_url(url)
    assert str(as_instance.value).startswith("instance URL ") and TOKEN not in str(as_instance.value)


def test_resolve_url_builds_keywords_with_the_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PC_TEST_ROTATED", ODD)
    resolved = resolve_url("postgresql://alice@db.example/postgres", "PC_TEST_ROTATED", "shop")
    assert conninfo_to_dict(resolved) == {"user": "alice", "password": ODD, "host": "db.example", "dbname": "shop"}
    with pytest.raises(TargetError, match="PC_TEST_MISSING"):
        resolve_url("postgresql://alice@db.example/postgres", "PC_TEST_MISSING")
    with pytest.raises(TargetError) as raised:
        resolve_url(f"postgresql://alice:{ODD}@db.example:port/postgres", None)
    assert "invalid port" in str(raised.value) and TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{ODD}@db:5432/app?sslmode=require",
        f"postgresql://alice:{quote(ODD, safe='')}@db:5432/app?sslmode=require",
    ],
)
def test_display_url_masks_the_whole_password(url: str) -> None:
    assert display_url(url) == "postgresql://alice:***@db:5432/app?sslmode=require"
    assert display_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert display_url("postgresql://root@127.0.0.1/test") == "postgresql://root@127.0.0.1/test"
    assert display_url("postgresql://u@h/db?password=x&sslmode=disable") == (
        "postgresql://u@h/db?password=***&sslmode=disable"
    )
    assert display_url(f"host=db password='{TOKEN} x' dbname=app") == "host=db password=*** dbname=app"


def test_every_spelling_of_a_password_is_masked() -> None:
    spellings = [
        ODD,
        quote(ODD, safe=""),
        quote(ODD),
        json.dumps(ODD)[1:-1],
        ODD.replace("\\", "\\\\").replace("'", "\\'"),
    ]
    assert set(spellings) <= set(password_forms(ODD))
    text = " | ".join(spellings)
    assert TOKEN not in redact(text, *url_secrets(f"postgresql://u:{quote(ODD, safe='')}@h/db"))
    assert TOKEN not in redact(
        text, *url_secrets(f"host=h password='{ODD.replace(chr(92), 2 * chr(92))}'".replace("'F", "\\'F"))
    )
    assert password_forms(None) == password_forms("") == ()


def test_error_line_is_the_first_line_redacted() -> None:
    error = RuntimeError(f"connection to db failed: password {ODD} rejected\nDETAIL: {TOKEN}")
    assert error_line(error, *password_forms(ODD)) == f"connection to db failed: password {MASK} rejected"
    assert error_line(RuntimeError("")) == "RuntimeError"
    assert error_line(RuntimeError("see postgresql://u:p@ss@h/db")) == "see postgresql://u:***@h/db"


def test_metadata_url_with_an_odd_password_is_accepted_and_never_shown() -> None:
    url = f"postgresql://plancheck:{quote(ODD, safe='')}@db.internal:5432/plancheck"
    settings = load_settings({"PLANCHECK_DATABASE_URL": url})
    assert engine_url(settings.database_url).password == ODD
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
    with pytest.raises(SettingsError) as raised:
        load_settings({"PLANCHECK_DATABASE_URL": f"postgresql://plancheck:{ODD}@db.internal:99999/plancheck"})
    assert "PLANCHECK_DATABASE_URL" in str(raised.value) and TOKEN not in str(raised.value)
