"""Database groups: a CEL expression over `resource` decides which databases belong to a group.

Expressions are validated when a group is created (`compile_expression`), so a typo is an error then,
not a silent empty group at check time. Membership is evaluated when checks run.

Decisions:
* An expression that fails on one database (e.g. `resource.labels["tier"]` on a database without that
  label — standard CEL semantics make a missing key an error) does not match that database; the run
  goes on. Write `"tier" in resource.labels && resource.labels["tier"] == "gold"` to be explicit.
* `select_members` orders members by (instance, database name) and, with a sampling size, keeps the
  first N: deterministic, so re-runs check the same databases.
* Expressions are user input evaluated by an interpreter (cel-python, about 5 µs per syntax-tree node
  it visits, with no cost limit of its own), so their cost is bounded before anything is evaluated:
  length, nesting depth and literal sizes are capped, and a static estimate of the nodes one
  evaluation visits — where a macro (`map`, `all`, `exists`, …) multiplies its body's cost by the
  size of what it iterates — must stay under MAX_COST. Membership over a project's databases costs at
  most that estimate times their number, which must stay under MEMBERSHIP_BUDGET.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import base_functions
from lark import Tree

from plancheck.checks.limits import MAX_LABELS
from plancheck.checks.resource import DatabaseResource

log = logging.getLogger(__name__)

VARIABLE = "resource"
FIELDS = ("database_name", "environment_id", "instance_id", "labels")
# Macros bind their first argument as a variable: resource.labels.exists(k, k.startsWith("x")).
_BINDING_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_FUNCTIONS = frozenset(name for name in base_functions if name[:1].isalpha()) | _BINDING_MACROS | {"has"}
_TYPE_NAMES = frozenset(name for name, value in base_functions.items() if isinstance(value, type))

MAX_EXPRESSION_LENGTH = 2_000
MAX_NESTING = 12  # sub-expressions inside sub-expressions (parentheses, arguments, list items)
MAX_LITERAL_ITEMS = 100  # elements of one list or map literal
MAX_STRING_LITERAL = 256
MAX_COST = 5_000  # syntax-tree nodes one evaluation may visit (about 25 ms)
MEMBERSHIP_BUDGET = 2_000_000  # nodes all evaluations of one membership may visit (about 10 s)
_COLLECTION_LITERALS = {"list_lit": "list", "map_lit": "map"}


class InvalidExpression(ValueError):
    """A group expression that cannot select databases: syntax error, unknown name, not boolean."""


@dataclass(frozen=True)
class CompiledExpression:
    expression: str
    program: celpy.Runner = field(repr=False, compare=False)
    tree: Tree = field(repr=False, compare=False)

    def cost(self, labels: int = MAX_LABELS) -> int:
        """Static estimate of the nodes one evaluation visits on a database with this many labels."""
        return estimate_cost(self.tree, labels)


@cache
def _environment() -> celpy.Environment:
    """CEL's environment, built on first use (its grammar takes a tenth of a second to build)."""
    return celpy.Environment()


def compile_expression(expression: str) -> CompiledExpression:
    """Parse and validate a group expression; raises InvalidExpression with a message for people.

    Size and cost are checked before the expression is evaluated even once.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidExpression(
            f"group expression is {len(expression):,} characters; at most {MAX_EXPRESSION_LENGTH:,} are allowed"
        )
    try:
        tree = _environment().compile(expression)
    except celpy.CELParseError as error:
        raise InvalidExpression(f"syntax error in group expression:\n{str(error).rstrip()}") from None
    _check_sizes(tree)
    _check_names(tree)
    cost = estimate_cost(tree, MAX_LABELS)
    if cost > MAX_COST:
        raise InvalidExpression(
            f"group expression is too expensive: one evaluation may visit about {cost:,} "
            f"nodes, at most {MAX_COST:,} are allowed (nested macros over large lists "
            "multiply); simplify it"
        )
    compiled = CompiledExpression(expression, _environment().program(tree), tree)
    _check_boolean(compiled)
    return compiled


def estimate_cost(tree: Tree, labels: int) -> int:
    """Upper estimate of the syntax-tree nodes one evaluation visits on a database with `labels` labels.

    A node costs 1 plus its children; a macro costs its target plus, per element the target can hold,
    its body. A list or map literal holds its elements and `resource.labels` `labels` entries; anything
    else (a macro's variable, a computed list) is bounded by the largest of its own cost, `labels` and
    the size of the whole expression. Iterative: trees may be deep.
    """
    cost: dict[int, int] = {}
    whole = sum(1 for _ in tree.iter_subtrees())
    for node in _post_order(tree):
        children = [child for child in node.children if isinstance(child, Tree)]
        if node.data == "member_dot_arg" and str(node.children[1]) in _BINDING_MACROS and len(children) == 2:
            target, arguments = children
            body = sum(cost[id(argument)] for argument in arguments.children[1:] if isinstance(argument, Tree))
            size = _elements(target, labels)
            size = max(cost[id(target)], labels, whole) if size is None else size
            cost[id(node)] = 1 + cost[id(target)] + size * body
        else:
            cost[id(node)] = 1 + sum(cost[id(child)] for child in children)
    return cost[id(tree)]


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

    None or 0 means no sampling (0 is how a project's `ci_sampling_size` says "off"). An expression
    whose cost over all these databases would exceed MEMBERSHIP_BUDGET is refused before any evaluation.
    """
    if sampling_size is not None and sampling_size < 0:
        raise ValueError(f"sampling size must not be negative, got {sampling_size}")
    ordered = sorted(resources, key=lambda r: (r.instance_id, r.database_name))
    cost = compiled.cost(max((len(resource.labels) for resource in ordered), default=0))
    if cost * len(ordered) > MEMBERSHIP_BUDGET:
        raise InvalidExpression(
            f"group expression costs about {cost:,} nodes per database; over {len(ordered):,} databases that "
            f"exceeds the budget of {MEMBERSHIP_BUDGET:,} nodes: simplify it"
        )
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


def _check_sizes(tree: Tree) -> None:
    """Literals and nesting within the limits, with a message naming the limit."""
    for node in tree.iter_subtrees():
        if node.data in _COLLECTION_LITERALS:
            items = _literal_items(node)
            if items > MAX_LITERAL_ITEMS:
                raise InvalidExpression(
                    f"a {_COLLECTION_LITERALS[node.data]} literal has {items:,} elements; "
                    f"at most {MAX_LITERAL_ITEMS} are allowed in a group expression"
                )
        elif _is_long_string_literal(node):
            raise InvalidExpression(f"a string literal is longer than {MAX_STRING_LITERAL} characters")
    depth = _nesting(tree)
    if depth > MAX_NESTING:
        raise InvalidExpression(f"group expression nests {depth} levels deep; at most {MAX_NESTING} are allowed")


def _is_long_string_literal(node: Tree) -> bool:
    text = str(node.children[0]) if node.data == "literal" else ""
    return text[:1] in ('"', "'", "r", "R", "b", "B") and len(text) > MAX_STRING_LITERAL + 2  # + 2: the quotes


def _nesting(tree: Tree) -> int:
    """How deeply sub-expressions (`expr` nodes) nest; iterative."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += node.data == "expr"
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))
    return deepest


def _post_order(tree: Tree) -> list[Tree]:
    """Every subtree, children before their parent; iterative."""
    order, stack = [], [tree]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(child for child in node.children if isinstance(child, Tree))
    return order[::-1]


def _elements(target: Tree, labels: int) -> int | None:
    """How many elements a macro's target holds, if that is plain from the syntax: a literal's count,
    or `labels` for resource.labels; None otherwise."""
    node = target
    while node.data not in _COLLECTION_LITERALS and len(node.children) == 1 and isinstance(node.children[0], Tree):
        node = node.children[0]
    if node.data in _COLLECTION_LITERALS:
        return _literal_items(node)
    if node.data == "member_dot" and str(node.children[1]) == "labels" and _bare_name(node.children[0]) == VARIABLE:
        return labels
    return None


def _literal_items(node: Tree) -> int:
    """Elements of a list literal, entries of a map literal."""
    items = len(node.children[0].children) if node.children and isinstance(node.children[0], Tree) else 0
    return items // 2 if node.data == "map_lit" else items


def _macro_variables(tree: Tree) -> set[str]:
    """Names that macros bind, e.g. k in resource.labels.exists(k, k.startsWith("team"))."""
    names = set()
    for node in tree.find_data("member_dot_arg"):
        arguments = node.children[2] if len(node.children) > 2 else None
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
        VARIABLE: celtypes.MapType(
            {
                celtypes.StringType("database_name"): celtypes.StringType(resource.database_name),
                celtypes.StringType("environment_id"): celtypes.StringType(resource.environment_id),
                celtypes.StringType("instance_id"): celtypes.StringType(resource.instance_id),
                celtypes.StringType("labels"): labels,
            }
        )
    }


def _reason(error: Exception) -> str:
    return str(error.args[0]) if error.args else type(error).__name__
