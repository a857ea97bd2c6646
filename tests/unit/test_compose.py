"""docker-compose.yml and the Dockerfile, checked without Docker: every command exists, every
variable is one plancheck (or the image) reads, and the production shape holds."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import CliRunner as ClickRunner
from typer.testing import CliRunner

from plancheck.core.settings import load_settings

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
PLANCHECK_IMAGE_SERVICES = ("migrate", "worker", "beat", "flower", "metrics", "api")
# Variables the postgres image documents (besides PGDATA).
POSTGRES_IMAGE_VARS = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "POSTGRES_INITDB_ARGS",
    "POSTGRES_INITDB_WALDIR",
    "POSTGRES_HOST_AUTH_METHOD",
    "PGDATA",
}
REQUIRED_VARS = {"POSTGRES_PASSWORD": "pg-Secret-1", "FLOWER_USER": "admin", "FLOWER_PASSWORD": "flower-Secret-2"}

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution (${X}, ${X:-default}, ${X-default}, ${X:?error}, $$)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset = current is None or (current == "" and op and op.startswith(":"))
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, REQUIRED_VARS if env is None else env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value)
    return {key: "" if item is None else str(item) for key, item in value.items()}


def plancheck_variables() -> set[str]:
    """Every PLANCHECK_* name in the package's source and celeryconfig.py."""
    sources = [*(REPO_ROOT / "plancheck").rglob("*.py"), REPO_ROOT / "celeryconfig.py"]
    return {name for path in sources for name in re.findall(r"\bPLANCHECK_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}


def plancheck_cli() -> typer.Typer:
    """The main CLI if it is wired, else a CLI holding the ops commands alone."""
    try:
        from plancheck.cli.main import app
    except ImportError:
        from plancheck.cli.ops import register

        app = typer.Typer()
        register(app)
    return app


def test_services_are_the_production_shape(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "worker", "beat", "flower", "metrics", "api"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["beat"]["deploy"]["replicas"] == 2
    for name in PLANCHECK_IMAGE_SERVICES:
        assert services[name]["build"] == "."


def test_compose_fails_without_required_secrets() -> None:
    for missing in REQUIRED_VARS:
        env = {key: value for key, value in REQUIRED_VARS.items() if key != missing}
        with pytest.raises(MissingVariable, match=missing):
            load_compose(env)


def test_postgres_and_redis_have_healthchecks_and_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
        (volume,) = services[name]["volumes"]
        assert volume.split(":")[0] in compose["volumes"], name


def test_startup_order(services: dict[str, Any]) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"
    for name in ("worker", "beat", "metrics", "api"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("worker", "beat", "flower", "api"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_workers_get_time_for_a_warm_shutdown(services: dict[str, Any]) -> None:
    assert _seconds(services["worker"]["stop_grace_period"]) >= 60


def test_every_command_is_an_installed_console_script(services: dict[str, Any]) -> None:
    scripts = {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}
    for name in PLANCHECK_IMAGE_SERVICES:
        assert command(services[name])[0] in scripts, name


def _celery_services(services: dict[str, Any]) -> dict[str, list[str]]:
    found = {name: command(service) for name, service in services.items() if command(service)[:1] == ["celery"]}
    assert {args[3] for args in found.values()} == {"worker", "beat", "flower"}
    return found


def test_celery_commands_parse(services: dict[str, Any]) -> None:
    """`celery -A plancheck worker|beat|flower …`: the app, celeryconfig and every option exist."""
    from celery.bin.celery import celery

    import plancheck

    assert plancheck.app.main == "plancheck"
    importlib.import_module("celeryconfig")
    for name, args in _celery_services(services).items():
        assert args[1:3] == ["-A", "plancheck"], name
        result = ClickRunner().invoke(celery, [*args[1:], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_flower_has_basic_auth_and_known_options(services: dict[str, Any]) -> None:
    from flower.options import options

    flower = services["flower"]
    args = command(flower)
    credentials = f"{REQUIRED_VARS['FLOWER_USER']}:{REQUIRED_VARS['FLOWER_PASSWORD']}"
    assert environment(flower)["FLOWER_BASIC_AUTH"] == credentials
    known = set(options._options)
    for arg in args[4:]:
        name = arg.removeprefix("--").split("=", 1)[0]
        assert name.replace("_", "-") in known, arg
    # Flower turns every FLOWER_* variable into an option and dies on unknown ones.
    for variable in environment(flower):
        if variable.startswith("FLOWER_"):
            assert variable.removeprefix("FLOWER_").lower().replace("_", "-") in known, variable
    assert "FLOWER_UNAUTHENTICATED_API" not in environment(flower)
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # loopback only, unless an operator decides otherwise


def test_no_secret_is_on_a_command_line(services: dict[str, Any]) -> None:
    """Command lines are visible to every user of the host (`ps`); secrets go through the environment."""
    for name, service in services.items():
        for secret in REQUIRED_VARS.values():
            assert not [arg for arg in command(service) if secret in arg], name


def test_plancheck_commands_exist(services: dict[str, Any]) -> None:
    app = plancheck_cli()
    for name, service in services.items():
        args = command(service)
        if args[:1] == ["plancheck"]:
            result = CliRunner().invoke(app, [*args[1:], "--help"])
            assert result.exit_code == 0, (name, result.output)
    assert command(services["metrics"])[1:3] == ["metrics", "serve"]
    assert command(services["api"])[1:3] == ["api", "serve"]


def test_the_api_is_published_on_loopback_only_and_checks_its_health(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["ports"] == ["127.0.0.1:8080:8080"]
    assert command(api)[-4:] == ["--host", "0.0.0.0", "--port", "8080"]  # inside its container
    probe = api["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"] and "http://127.0.0.1:8080/healthz" in probe[3]
    compile(probe[3], "healthcheck", "exec")
    assert environment(api)["PLANCHECK_API_SECRET"] == ""  # optional: unset, the key is kept in PostgreSQL
    secret = "s" * 40
    assert (
        environment(load_compose({**REQUIRED_VARS, "PLANCHECK_API_SECRET": secret})["services"]["api"])[
            "PLANCHECK_API_SECRET"
        ]
        == secret
    )


def test_migrate_runs_the_migrations_to_the_single_head(services: dict[str, Any]) -> None:
    """The image has no alembic.ini: its migration step is `plancheck db upgrade`, which finds the
    migrations through the package; `alembic upgrade head` in a checkout reads the same ones."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from plancheck.store.db import alembic_config

    assert command(services["migrate"]) == ["plancheck", "db", "upgrade"]
    packaged = ScriptDirectory.from_config(alembic_config("postgresql://unused@localhost/x")).get_heads()
    checkout = ScriptDirectory.from_config(Config(str(REPO_ROOT / "alembic.ini"))).get_heads()
    assert len(packaged) == 1 and packaged == checkout


def test_environment_is_only_what_plancheck_reads(services: dict[str, Any]) -> None:
    known = plancheck_variables()
    for name in PLANCHECK_IMAGE_SERVICES:
        env = environment(services[name])
        unknown = {key for key in env if not key.startswith("FLOWER_")} - known
        assert not unknown, (name, unknown)
        settings = load_settings(env)
        assert "@postgres:5432/" in settings.database_url
        assert settings.broker_url.startswith("redis://redis:6379/")
        assert REQUIRED_VARS["POSTGRES_PASSWORD"] in settings.database_url
    assert set(environment(services["postgres"])) <= POSTGRES_IMAGE_VARS
    assert not environment(services["redis"])


def test_tunables_are_passed_through(services: dict[str, Any]) -> None:
    env = dict(REQUIRED_VARS, PLANCHECK_CLAIM_BATCH="7", PLANCHECK_LEASE_SECONDS="40")
    settings = load_settings(environment(load_compose(env)["services"]["worker"]))
    assert (settings.claim_batch, settings.lease_seconds) == (7, 40.0)


def test_beat_keeps_no_state_on_disk() -> None:
    """Two beats and a read-only image need beat's in-memory scheduler, not the shelve file one."""
    from celery.beat import PersistentScheduler
    from celery.utils.imports import symbol_by_name

    import celeryconfig

    assert not issubclass(symbol_by_name(celeryconfig.beat_scheduler), PersistentScheduler)


def test_beats_record_heartbeats() -> None:
    """The compose file's beats show up in `plancheck status` only with the heartbeat scheduler."""
    import celeryconfig

    assert celeryconfig.beat_scheduler == "plancheck.scheduler.beat:Scheduler"


def test_dockerfile_installs_the_wheel() -> None:
    """The image is built as users install plancheck: a wheel, no source tree, no editable install."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line[0].isspace()]
    keywords = [(parts[0], parts[1] if len(parts) > 1 else "") for parts in instructions if parts[0].isupper()]
    stages = [value for keyword, value in keywords if keyword == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]
    final = keywords[[keyword for keyword, _ in keywords].index("FROM", 1) :]
    assert ("RUN", "pip wheel --no-deps --wheel-dir /wheels .") in keywords
    assert ("RUN", "pip install /wheels/*.whl && rm -r /wheels") in final
    assert not [value for keyword, value in final if keyword == "COPY" and "--from=build" not in value]
    assert "-e ." not in dockerfile
    user = [value for keyword, value in final if keyword == "USER"]
    assert user and user[-1] not in ("root", "0")


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
            for prefix in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "pyproject.toml",
        "README.md",
        "alembic.ini",
        "alembic/env.py",
        "alembic/versions/0001_seed.py",
        "celeryconfig.py",
        "plancheck/__init__.py",
        "plancheck/store/db.py",
    ):
        assert not _ignored(needed, patterns), needed
    for secret_or_junk in (".env", ".git/config", ".venv/bin/python", "plancheck/__pycache__/x.pyc"):
        assert _ignored(secret_or_junk, patterns), secret_or_junk
