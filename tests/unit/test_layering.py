"""The layers of plancheck and what each may import, read from the source (docs/architecture.md).

Every `import plancheck.X` and `from plancheck.X import …` — at module level or inside a function —
is checked against the table: a layer imports only the layers below it, so the store never reaches
up to Celery or the CLI, and the checks know nothing of the store or of Celery.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plancheck"

# layer -> the plancheck layers its modules may import (itself included)
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "checks": frozenset({"checks", "core"}),
    "store": frozenset({"store", "core"}),
    "domain": frozenset({"domain", "store", "checks", "core"}),
    "scheduler": frozenset({"scheduler", "domain", "store", "checks", "core"}),
    "ops": frozenset({"ops", "store", "core"}),
    "api": frozenset({"api", "scheduler", "domain", "ops", "store", "checks", "core"}),
    "server": frozenset({"server", "api", "core"}),
    "cli": frozenset({"cli", "api", "server", "devtools", "checks", "core"}),
    "devtools": frozenset({"devtools", "api", "core"}),
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "plancheck" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every plancheck module the file imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "plancheck":
                found += [(node.lineno, f"plancheck.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, module) for line, module in found if module.startswith("plancheck.")]


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE)


def test_every_package_has_a_layer() -> None:
    packages = {path.relative_to(PACKAGE).parts[0] for path in _modules()}
    assert packages == set(ALLOWED), packages ^ set(ALLOWED)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_stay_within_the_layers_below(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0]
    wrong = [f"line {line}: {module}" for line, module in _imports(path) if _layer(module) not in ALLOWED[layer]]
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}: {wrong}"


def test_the_rules_the_layering_exists_for() -> None:
    """The checks and the CLI never touch the store or Celery; the store never reaches up."""
    assert not ALLOWED["checks"] & {"store", "scheduler"}
    assert not ALLOWED["cli"] & {"store", "scheduler"}
    assert not ALLOWED["store"] & {"scheduler", "cli", "api", "domain", "server"}


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from plancheck.store import runs\n    import plancheck.scheduler.app\n")
    assert [module_ for _, module_ in _imports(module)] == ["plancheck.store", "plancheck.scheduler.app"]
