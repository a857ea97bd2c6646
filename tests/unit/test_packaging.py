"""What an installed plancheck needs: every package in the wheel, the migrations found through the
package, and start-up that imports only what a command uses (`bench/startup.py` measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from plancheck.store.db import migrations_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = frozenset(
    {
        "alembic",
        "celery",
        "fastapi",
        "httpx",
        "jinja2",
        "kombu",
        "pglast",
        "psycopg",
        "pydantic",
        "redis",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    }
)


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _loaded_after(statement: str, tmp_path: Path) -> set[str]:
    """Top-level packages in sys.modules after `statement`, in a fresh interpreter outside the checkout."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def _folders(root: Path, name: str) -> set[str]:
    """`root` and its folders as dotted package names under `name`, bytecode caches aside."""
    folders = [root, *(path for path in root.rglob("*") if path.is_dir() and "__pycache__" not in path.parts)]
    return {".".join((name, *folder.relative_to(root).parts)) for folder in folders}


def test_the_wheel_lists_every_package_of_the_tree() -> None:
    """pyproject.toml names the packages, folders of data files included (alembic/ is mapped in as
    plancheck.migrations), so a new folder must be added there, or an installed plancheck would lack it."""
    config = _pyproject()["tool"]["setuptools"]
    found = _folders(REPO_ROOT / "plancheck", "plancheck") | _folders(REPO_ROOT / "alembic", "plancheck.migrations")
    assert set(config["packages"]) == found
    assert config["package-dir"] == {"plancheck.migrations": "alembic"}
    assert config["py-modules"] == ["celeryconfig"]


def test_migrations_are_found_through_the_package_not_the_current_directory(tmp_path: Path) -> None:
    found = subprocess.run(
        [sys.executable, "-c", "from plancheck.store.db import migrations_dir; print(migrations_dir())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == migrations_dir() == REPO_ROOT / "alembic"
    shipped = _pyproject()["tool"]["setuptools"]["package-data"]["plancheck.migrations"]
    assert all(list(migrations_dir().glob(pattern)) for pattern in shipped)
    assert (migrations_dir() / "env.py").is_file()


def test_the_cli_starts_without_the_libraries_its_commands_use(tmp_path: Path) -> None:
    """`plancheck --help` builds the whole command tree: none of it may load a database driver,
    Celery, the parser or the web stack until a command runs."""
    assert _loaded_after("import plancheck.cli.main", tmp_path).isdisjoint(HEAVY)


def test_the_review_loads_neither_celery_nor_sqlalchemy(tmp_path: Path) -> None:
    statement = "import plancheck.checks, plancheck.checks.advise, plancheck.checks.rules, plancheck.checks.summary"
    loaded = _loaded_after(statement, tmp_path)
    assert "pglast" in loaded  # the probe did import the review
    assert loaded.isdisjoint({"celery", "kombu", "sqlalchemy", "alembic", "fastapi"})


def test_importing_the_package_loads_nothing_else(tmp_path: Path) -> None:
    assert _loaded_after("import plancheck", tmp_path).isdisjoint(HEAVY | {"typer", "rich"})
