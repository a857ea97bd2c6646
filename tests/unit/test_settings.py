"""Settings from the environment: defaults, and a clear error naming the variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from plancheck.core.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    SettingsError,
    load_settings,
    sqlalchemy_url,
)


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.broker_url == DEFAULT_BROKER_URL
    assert settings.heartbeat_seconds < settings.lease_seconds
    assert settings.claim_batch >= 1 and settings.max_attempts >= 1 and settings.chunk_size >= 1
    assert min(settings.claim_interval, settings.reap_interval, settings.relay_interval) > 0
    assert settings.log_format == "text"


def test_empty_values_mean_default() -> None:
    """docker-compose passes unset tunables through as empty strings."""
    names = [
        "PLANCHECK_DATABASE_URL",
        "PLANCHECK_BROKER_URL",
        "PLANCHECK_CLAIM_BATCH",
        "PLANCHECK_CLAIM_INTERVAL",
        "PLANCHECK_LEASE_SECONDS",
        "PLANCHECK_HEARTBEAT_SECONDS",
        "PLANCHECK_MAX_ATTEMPTS",
        "PLANCHECK_LOG_FORMAT",
    ]
    assert load_settings(dict.fromkeys(names, "")) == load_settings({})


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "PLANCHECK_DATABASE_URL": "postgresql://alice:pw@db:5432/meta",
            "PLANCHECK_BROKER_URL": "redis://redis:6379/3",
            "PLANCHECK_CLAIM_BATCH": "7",
            "PLANCHECK_CLAIM_INTERVAL": "0.5",
            "PLANCHECK_REAP_INTERVAL": "3",
            "PLANCHECK_RELAY_INTERVAL": "4",
            "PLANCHECK_LEASE_SECONDS": "30",
            "PLANCHECK_HEARTBEAT_SECONDS": "5",
            "PLANCHECK_MAX_ATTEMPTS": "4",
            "PLANCHECK_CHUNK_SIZE": "9",
            "PLANCHECK_LOG_FORMAT": "json",
        }
    )
    assert settings.database_url == "postgresql+psycopg://alice:pw@db:5432/meta"
    assert settings.broker_url == "redis://redis:6379/3"
    assert (settings.claim_batch, settings.claim_interval, settings.reap_interval, settings.relay_interval) == (
        7,
        0.5,
        3.0,
        4.0,
    )
    assert (settings.lease_seconds, settings.heartbeat_seconds, settings.max_attempts) == (30.0, 5.0, 4)
    assert (settings.chunk_size, settings.log_format) == (9, "json")


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_libpq_urls_get_the_psycopg_driver(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected
    assert load_settings({"PLANCHECK_DATABASE_URL": url}).database_url == expected


@pytest.mark.parametrize(
    "name, value",
    [
        ("PLANCHECK_CLAIM_BATCH", "many"),
        ("PLANCHECK_CLAIM_BATCH", "1.5"),
        ("PLANCHECK_CLAIM_BATCH", "0"),
        ("PLANCHECK_CLAIM_BATCH", "-3"),
        ("PLANCHECK_CLAIM_INTERVAL", "soon"),
        ("PLANCHECK_CLAIM_INTERVAL", "-1"),
        ("PLANCHECK_REAP_INTERVAL", "0"),
        ("PLANCHECK_RELAY_INTERVAL", "x"),
        ("PLANCHECK_LEASE_SECONDS", "-15"),
        ("PLANCHECK_LEASE_SECONDS", "ten"),
        ("PLANCHECK_HEARTBEAT_SECONDS", "-1"),
        ("PLANCHECK_MAX_ATTEMPTS", "0"),
        ("PLANCHECK_MAX_ATTEMPTS", "three"),
        ("PLANCHECK_CHUNK_SIZE", "-1"),
        ("PLANCHECK_DATABASE_URL", "mysql://u@h/d"),
        ("PLANCHECK_DATABASE_URL", "sqlite:///plancheck.db"),
        ("PLANCHECK_DATABASE_URL", "not a url"),
        ("PLANCHECK_BROKER_URL", "http://guest@rabbit//"),
        ("PLANCHECK_LEASE_SECONDS", "nan"),
        ("PLANCHECK_LEASE_SECONDS", "inf"),
        ("PLANCHECK_LEASE_SECONDS", "1e9"),
        ("PLANCHECK_CLAIM_INTERVAL", "-inf"),
        ("PLANCHECK_HEARTBEAT_SECONDS", "NaN"),
        ("PLANCHECK_CLAIM_BATCH", "99999999999999999999"),
        ("PLANCHECK_MAX_ATTEMPTS", "1000"),
        ("PLANCHECK_DATABASE_URL", "postgresql://u@h:99999/db"),
        ("PLANCHECK_DATABASE_URL", "postgresql://u@h:abc/db"),
        ("PLANCHECK_QUEUE", "has spaces"),
        ("PLANCHECK_QUEUE", "-leading-dash"),
        ("PLANCHECK_BROKER_URL", "not a url"),
        ("PLANCHECK_LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({name: value})
    assert str(error.value).startswith(name) and "\n" not in str(error.value)
    assert "invalid literal" not in str(error.value) and "Input should" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis:6379/0",
        "rediss://redis:6380/1",
        "redis+socket:///tmp/redis.sock",
        "amqp://guest:guest@rabbit//",
        "amqps://u:p@rabbit:5671/vhost",
        "pyamqp://guest@rabbit//",
    ],
)
def test_redis_and_rabbitmq_brokers_are_accepted(url: str) -> None:
    assert load_settings({"PLANCHECK_BROKER_URL": url}).broker_url == url


def test_numbers_say_their_bounds() -> None:
    with pytest.raises(SettingsError, match=r"^PLANCHECK_LEASE_SECONDS='nan' must be a finite number from 1 to 86400$"):
        load_settings({"PLANCHECK_LEASE_SECONDS": "nan"})
    with pytest.raises(SettingsError, match=r"^PLANCHECK_CLAIM_BATCH='0' must be a whole number from 1 to 10000$"):
        load_settings({"PLANCHECK_CLAIM_BATCH": "0"})
    with pytest.raises(SettingsError, match=r"^PLANCHECK_CLAIM_BATCH='1.5' is not a whole number$"):
        load_settings({"PLANCHECK_CLAIM_BATCH": "1.5"})
    with pytest.raises(SettingsError, match=r"^PLANCHECK_LEASE_SECONDS='soon' is not a number$"):
        load_settings({"PLANCHECK_LEASE_SECONDS": "soon"})
    with pytest.raises(SettingsError, match=r"^PLANCHECK_LOG_FORMAT='xml' must be 'text' or 'json'$"):
        load_settings({"PLANCHECK_LOG_FORMAT": "xml"})


def test_every_setting_is_bounded() -> None:
    """A new setting must say its limits: every number has both bounds, every text a length or choices."""
    from plancheck.core.settings import Settings

    for name, field in Settings.model_fields.items():
        kinds = {type(item).__name__ for item in field.metadata}
        if field.annotation in (int, float):
            assert {"Ge", "Le"} <= kinds, name
        elif field.annotation is str:
            assert "MaxLen" in kinds, name


@pytest.mark.parametrize("heartbeat, lease", [("15", "15"), ("20", "15"), ("2", "1.5")])
def test_heartbeat_must_be_shorter_than_lease(heartbeat: str, lease: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"PLANCHECK_HEARTBEAT_SECONDS": heartbeat, "PLANCHECK_LEASE_SECONDS": lease})
    assert "PLANCHECK_HEARTBEAT_SECONDS" in str(error.value) and "PLANCHECK_LEASE_SECONDS" in str(error.value)


def test_database_password_is_not_in_the_error() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"PLANCHECK_DATABASE_URL": "mysql://alice:Hunter2-Needle@db/app"})
    assert "Hunter2-Needle" not in str(error.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_check_limits_default_to_the_settings_defaults() -> None:
    """A check run without the worker's limits (tests, tools) keeps the limits the settings default to."""
    from plancheck.checks.limits import DEFAULT_LIMITS
    from plancheck.core.settings import Settings
    from plancheck.domain.targets import check_limits

    assert check_limits(Settings()) == DEFAULT_LIMITS


def test_check_limits_follow_the_settings() -> None:
    from plancheck.domain.targets import check_limits

    limits = check_limits(
        load_settings(
            {
                "PLANCHECK_TARGET_STATEMENT_TIMEOUT": "0.3",
                "PLANCHECK_TARGET_IDLE_CONNECTIONS": "0",
                "PLANCHECK_REVIEW_MAX_BYTES": "4096",
            }
        )
    )
    assert (limits.statement_timeout_ms, limits.idle_connections, limits.review_max_bytes) == (300, 0, 4096)


def test_a_short_api_secret_is_refused_without_being_shown() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"PLANCHECK_API_SECRET": "short-Needle"})
    assert str(error.value) == "PLANCHECK_API_SECRET must be at least 32 characters"
    secret = "s" * 32
    settings = load_settings({"PLANCHECK_API_SECRET": secret, "PLANCHECK_SESSION_SECONDS": "60"})
    assert settings.api_secret == secret and settings.session_seconds == 60 and secret not in repr(settings)


def test_every_setting_is_in_the_readme_table() -> None:
    from plancheck.core.settings import Settings

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| `PLANCHECK_")}
    documented = {name.strip(" `") for row in rows for name in row.split(",")}
    missing = {field.alias for field in Settings.model_fields.values()} - documented
    assert not missing, f"settings without a README row: {sorted(missing)}"
