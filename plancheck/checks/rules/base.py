"""What a review rule is, what it is given and what it returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

import re2
from pglast import ast

from plancheck.checks.rules.script import Script, Statement

RowEstimator = Callable[[str], int | None]
"""Given one DML statement's SQL, EXPLAIN's estimated rows on the target (None if unknown)."""


class Level(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    DISABLED = "DISABLED"


@dataclass(frozen=True)
class Finding:
    """One problem a rule found; index is the character index where it is in the script."""

    message: str
    index: int


@dataclass(frozen=True)
class RuleContext:
    script: Script
    options: Mapping[str, Any]
    estimate_rows: RowEstimator | None = None


@dataclass(frozen=True)
class Rule:
    """A review rule. bad and good are SQL examples that must and must not produce a finding."""

    name: str
    code: int
    default_level: Level
    description: str
    check: Callable[[RuleContext], Iterable[Finding]]
    bad: Sequence[str]
    good: Sequence[str]
    default_options: Mapping[str, Any] = field(default_factory=dict)

    def resolve_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with overrides; ValueError names the rule and the bad option."""
        for option, value in overrides.items():
            label = f"rule {self.name}: option {option!r}"
            if option not in self.default_options:
                known = ", ".join(sorted(self.default_options)) or "none"
                raise ValueError(f"{label} is unknown (known options: {known})")
            _check_option(label, value, self.default_options[option])
            if option == "pattern":
                _check_pattern(label, value)
        return {**self.default_options, **overrides}


def _check_option(label: str, value: Any, default: Any) -> None:
    """value must have the default's type (a bool is not an int here) and not be negative."""
    if isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        expected = "a list of strings"
    else:
        ok = type(value) is type(default) and not (type(value) is int and value < 0)
        expected = {int: "an integer >= 0", str: "a string"}[type(default)]
    if not ok:
        raise ValueError(f"{label} must be {expected}, got {value!r}")


def _check_pattern(label: str, value: str) -> None:
    try:
        user_pattern(value)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if isinstance(error.args[0], bytes) else error.args[0]
        raise ValueError(
            f"{label} is not a valid regular expression for RE2 ({reason}): patterns run on a linear-time "
            "engine, which has no backreferences or lookaround"
        ) from None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error reaches the user as a ValueError, not as a line on stderr


@lru_cache(maxsize=256)
def user_pattern(pattern: str) -> Any:
    """A project's naming pattern, compiled for RE2: matching takes time linear in the name, whatever the
    pattern (Python's backtracking `re` spins for hours on `^([a-z0-9]+_?)*$` and a 40-character name)."""
    return re2.compile(pattern, _RE2_OPTIONS)


def misnamed(
    stmt: Statement, kind: str, names: Iterable[tuple[str | None, ast.Node | None]], pattern: str
) -> Iterator[Finding]:
    """Findings for the names (with the node locating each) that do not match pattern."""
    regex = user_pattern(pattern)
    for name, node in names:
        if name is None or regex.search(name):
            continue
        suggestion = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()).strip("_")
        fix = f', e.g. "{suggestion}"' if suggestion and regex.search(suggestion) else ""
        yield Finding(
            f'{kind.capitalize()} name "{name}" does not match the naming convention /{pattern}/. '
            "Names outside the project's convention make the schema harder to read, search and automate "
            f"against, and mixed-case names force double quotes in every query. Choose a name that matches{fix}.",
            stmt.at(node),
        )
