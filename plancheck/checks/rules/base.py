"""What a review rule is, what it is given and what it returns."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import re2
from pglast import ast

from plancheck.checks.rules.script import Script, Statement

RowEstimator = Callable[[str], int | None]
"""Given one DML statement's SQL, EXPLAIN's estimated rows on the target (None if unknown)."""

FunctionVolatility = Callable[[str | None, str], str | None]
"""Given a function's schema (None: unqualified) and name, the target's pg_proc.provolatile of it:
"i" immutable, "s" stable, "v" volatile (the most volatile of its overloads); None if it has none."""


class Level(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    DISABLED = "DISABLED"


@dataclass(frozen=True)
class Finding:
    """One problem a rule found; index is the character index where it is in the script."""

    message: str
    index: int


class RuleContext(NamedTuple):
    """What a rule reads: the script, its options and, when a target is at hand, the target's answers.

    A tuple: one is built per rule per review, and it is cheaper than a frozen dataclass."""

    script: Script
    options: Mapping[str, Any]
    estimate_rows: RowEstimator | None = None
    function_volatility: FunctionVolatility | None = None


@dataclass(frozen=True)
class Rule:
    """A review rule. bad and good are SQL examples that must and must not produce a finding.

    description is the rule module's docstring: a paragraph saying what the rule catches, one or
    more saying why it matters, and a last one starting "Fix:" saying how to fix it.
    """

    name: str
    code: int
    default_level: Level
    description: str
    check: Callable[[RuleContext], Iterable[Finding]]
    bad: Sequence[str]
    good: Sequence[str]
    default_options: Mapping[str, Any] = field(default_factory=dict)
    what: str = field(init=False)
    why: str = field(init=False)
    fix: str = field(init=False)

    def __post_init__(self) -> None:
        paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", self.description.strip())]
        if len(paragraphs) < 3 or not paragraphs[-1].startswith("Fix: "):
            raise ValueError(f"rule {self.name}: the docstring must be what, why, then a 'Fix: ' paragraph")
        object.__setattr__(self, "what", paragraphs[0])
        object.__setattr__(self, "why", " ".join(paragraphs[1:-1]))
        fix = paragraphs[-1].removeprefix("Fix: ")
        object.__setattr__(self, "fix", fix[:1].upper() + fix[1:])

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
            elif option.endswith("template"):
                _check_template(label, value)
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


TEMPLATE_FIELDS = ("table", "columns", "ref_table", "ref_columns")


def _check_template(label: str, value: str) -> None:
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)]
    except ValueError as error:
        raise ValueError(f"{label} is not a valid name template: {error}") from None
    for name, spec, conversion in fields:
        if name is not None and (name not in TEMPLATE_FIELDS or spec or conversion):
            known = ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            raise ValueError(f"{label}: {{{name}}} is not a placeholder of name templates (known: {known})")


class Named(NamedTuple):
    """A name the script gives an object, the node locating it, and what a name template is filled with
    (table None: not known from the statement, so no template applies). A tuple: there is one per
    column of every CREATE TABLE."""

    name: str | None
    node: ast.Node | None
    template: str = ""
    table: str | None = None
    columns: tuple[str, ...] = ()
    ref_table: str = ""
    ref_columns: tuple[str, ...] = ()

    def expected(self) -> str | None:
        """The name the template asks for, if a template applies."""
        if not self.template or self.table is None:
            return None
        columns, ref_columns = "_".join(self.columns), "_".join(self.ref_columns)
        return self.template.format(
            table=self.table, columns=columns, ref_table=self.ref_table, ref_columns=ref_columns
        )


def misnamed(kind: str, names: Iterable[tuple[Statement, Named]], pattern: str) -> Iterator[Finding]:
    """Findings for the names (with their statements) that do not match pattern, or differ from their
    template's name."""
    regex = user_pattern(pattern)
    for stmt, named in names:
        if named.name is None:
            continue
        expected = named.expected()
        if expected is not None and named.name != expected:
            yield Finding(
                f'{kind.capitalize()} name "{named.name}" does not follow the project\'s template '
                f'"{named.template}", which makes it "{expected}". Names built from the table and its columns '
                "say what an object is wherever they appear: in plans, logs and error messages. Name it "
                f'"{expected}".',
                stmt.at(named.node),
            )
        elif not _matches(pattern, named.name):
            yield _pattern_finding(stmt, kind, named, pattern, regex)


@lru_cache(maxsize=4096)
def _matches(pattern: str, name: str) -> bool:
    """Whether name matches the user's pattern; schemas repeat their names (id, created_at) a lot."""
    return user_pattern(pattern).search(name) is not None


def _pattern_finding(stmt: Statement, kind: str, named: Named, pattern: str, regex: Any) -> Finding:
    name = named.name or ""
    suggestion = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()).strip("_")
    fix = f', e.g. "{suggestion}"' if suggestion and regex.search(suggestion) else ""
    return Finding(
        f'{kind.capitalize()} name "{name}" does not match the naming convention /{pattern}/. '
        "Names outside the project's convention make the schema harder to read, search and automate "
        f"against, and mixed-case names force double quotes in every query. Choose a name that matches{fix}.",
        stmt.at(named.node),
    )
