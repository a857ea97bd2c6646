"""Database groups: a CEL expression over `resource` decides which databases belong to a group.

Expressions are validated when a group is created (`compile_expression`), so a typo is an error then,
not a silent empty group at check time. Membership is evaluated when checks run.

Decisions:
* An expression that fails on one database (e.g. `resource.labels["tier"]` on a database without that
  label — standard CEL semantics make a missing key an error) does not match that database; the run
  goes on. Write `"tier" in resource.labels && resource.labels["tier"] == "gold"` to be explicit.
* `select_members` orders members by (instance, database name) and, with a sampling size, keeps the
  first N: deterministic, so re-runs check the same databases.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import base_functions
from lark import Tree

log = logging.getLogger(__name__)

VARIABLE = "resource"
FIELDS = ("database_name", "environment_id", "instance_id", "labels")
# Macros bind their first argument as a variable: resource.labels.exists(k, k.startsWith("x")).
_BINDING_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_FUNCTIONS = frozenset(name for name in base_functions if name[:1].isalpha()) | _BINDING_MACROS | {"has"}
_TYPE_NAMES = frozenset(name for name, value in base_functions.items() if isinstance(value, type))
_ENVIRONMENT = celpy.Environment()


class InvalidExpression(ValueError):
    """A group expression that cannot select databases: syntax error, unknown name, not boolean."""


@dataclass(frozen=True)
class DatabaseResource:
    """What a group expression sees of a database."""

    instance_id: str
    database_name: str
    environment_id: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.instance_id}/{self.database_name}"


@dataclass(frozen=True)
class CompiledExpression:
    expression: str
    program: celpy.Runner = field(repr=False, compare=False)


def compile_expression(expression: str) -> CompiledExpression:
    """Parse and validate a group expression; raises InvalidExpression with a message for people."""
    try:
        tree = _ENVIRONMENT.compile(expression)
    except celpy.CELParseError as error:
        raise InvalidExpression(f"syntax error in group expression:\n{str(error).rstrip()}") from None
    _check_names(tree)
    compiled = CompiledExpression(expression, _ENVIRONMENT.program(tree))
    _check_boolean(compiled)
    return compiled


def matches(compiled: CompiledExpression, resource: DatabaseResource) -> bool:
    """Whether `resource` belongs to the group; an evaluation error means no (logged, see module doc)."""
    try:
        value = compiled.program.evaluate(_activation(resource, celtypes.MapType))
    except Exception as error:  # CELEvalError, CELUnsupportedError, …: one odd database must not stop the run
        log.debug("group expression %r does not apply to %s: %s", compiled.expression, resource.name, _reason(error))
        return False
    return isinstance(value, celtypes.BoolType) and bool(value)


def select_members(
    compiled: CompiledExpression, resources: Iterable[DatabaseResource], sampling_size: int | None = None
) -> list[DatabaseResource]:
    """Matching databases in (instance, name) order; a sampling size keeps only the first N of them.

    None or 0 means no sampling (0 is how a project's `ci_sampling_size` says "off").
    """
    if sampling_size is not None and sampling_size < 0:
        raise ValueError(f"sampling size must not be negative, got {sampling_size}")
    ordered = sorted(resources, key=lambda r: (r.instance_id, r.database_name))
    members = [resource for resource in ordered if matches(compiled, resource)]
    return members[:sampling_size] if sampling_size else members


def _check_names(tree: Tree) -> None:
    """Reject unknown variables, fields and functions statically.

    Evaluation alone would miss them: CEL's && and || absorb errors (`false && typo` is false).
    """
    bound = _macro_variables(tree)
    for node in tree.iter_subtrees():
        if node.data in ("ident", "dot_ident"):
            name = str(node.children[0])
            if name != VARIABLE and name not in bound and name not in _TYPE_NAMES:
                raise InvalidExpression(f"unknown variable {name!r}: use {VARIABLE}.{'/'.join(FIELDS)}")
        elif node.data == "member_dot" and _bare_name(node.children[0]) == VARIABLE:
            if str(node.children[1]) not in FIELDS:
                raise InvalidExpression(
                    f"unknown field {VARIABLE}.{node.children[1]}: expected one of {', '.join(FIELDS)}"
                )
        elif node.data in ("ident_arg", "dot_ident_arg", "member_dot_arg"):
            function = str(node.children[1] if node.data == "member_dot_arg" else node.children[0])
            if function not in _FUNCTIONS:
                raise InvalidExpression(f"unknown function {function!r}")


def _macro_variables(tree: Tree) -> set[str]:
    """Names that macros bind, e.g. k in resource.labels.exists(k, k.startsWith("team"))."""
    names = set()
    for node in tree.find_data("member_dot_arg"):
        arguments = node.children[2]
        if str(node.children[1]) in _BINDING_MACROS and isinstance(arguments, Tree) and arguments.children:
            name = _bare_name(arguments.children[0])
            if name:
                names.add(name)
    return names


def _bare_name(node: Any) -> str | None:
    """The identifier if `node` is nothing but a name (single-child rules down to an ident)."""
    while isinstance(node, Tree) and node.data != "ident" and len(node.children) == 1:
        node = node.children[0]
    return str(node.children[0]) if isinstance(node, Tree) and node.data == "ident" else None


def _check_boolean(compiled: CompiledExpression) -> None:
    """Evaluate on a blank sample database and demand a bool: catches type errors and non-boolean results."""
    sample = DatabaseResource(instance_id="", database_name="", environment_id="")
    try:
        value = compiled.program.evaluate(_activation(sample, _AnyLabels))
    except Exception as error:  # whatever the interpreter raises, the expression is unusable
        raise InvalidExpression(f"{compiled.expression!r} cannot be evaluated: {_reason(error)}") from None
    if not isinstance(value, celtypes.BoolType):
        raise InvalidExpression(f"{compiled.expression!r} must be true or false, not a {type(value).__name__}")


class _AnyLabels(celtypes.MapType):
    """Labels of the validation sample: every key exists with "0", usable as a string and by int()/double()."""

    def __missing__(self, key: Any) -> celtypes.StringType:
        return celtypes.StringType("0")


def _activation(resource: DatabaseResource, labels_type: type[celtypes.MapType]) -> dict[str, Any]:
    labels = labels_type({celtypes.StringType(k): celtypes.StringType(v) for k, v in resource.labels.items()})
    return {
        VARIABLE: celtypes.MapType({
            celtypes.StringType("database_name"): celtypes.StringType(resource.database_name),
            celtypes.StringType("environment_id"): celtypes.StringType(resource.environment_id),
            celtypes.StringType("instance_id"): celtypes.StringType(resource.instance_id),
            celtypes.StringType("labels"): labels,
        })
    }


def _reason(error: Exception) -> str:
    return str(error.args[0]) if error.args else type(error).__name__
