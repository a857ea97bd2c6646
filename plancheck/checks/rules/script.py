"""The parsed script every rule reads: statements, their nodes by type, and what the script did before each.

The script is parsed and walked once; rules look nodes up by type instead of walking again. All
indexes are character indexes into the original text (pglast converts the parser's byte offsets).
"""

from __future__ import annotations

import bisect
import operator
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from typing import Any, NamedTuple, TypeVar

import pglast
from pglast import ast
from pglast.enums import ObjectType, TransactionStmtKind, VariableSetKind
from pglast.parser import ParseError

from plancheck.checks.rules import lexer

N = TypeVar("N", bound=ast.Node)
T = TypeVar("T")

# PostgreSQL rejects NUL, and lone surrogates cannot be encoded for the parser.
_INVALID_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_SKIP = re.compile(r"\s+|--[^\n\r]*")
_ZERO_DURATION = re.compile(r"\s*0*(?:\.0*)?\s*[a-z]*\s*")
# pglast builds its tree recursively in C, about 0.3 KB of stack per level, and "1+1+..." nests one
# level per 2 bytes: 8 MB stacks overflow (segfault) at ~26,000 levels; 512 MB covers a 2 MiB script.
_PARSER_STACK_BYTES = 512 * 1024 * 1024
_stack_size_lock = threading.Lock()
_PARSER_THREADS = 2  # reviews of concurrent callers (API threads) need not queue behind one big parse
# Above this _offset_mapping_cost (about 0.2 s), pglast would spend too long on non-ASCII names.
_OFFSET_MAPPING_BUDGET = 20_000_000
# Scripts up to this many UTF-8 bytes are parsed in the caller's thread: starting a parser thread costs
# more than parsing them. Nesting is at most one level per byte ("+-+-…"; bison stops unary chains at
# 10,000 levels), about 0.36 KB of stack each: under 1 MB, far below any thread's default stack.
_INLINE_PARSE_BYTES = 2048


class SqlSyntaxError(Exception):
    """The script does not parse; index is the character index of the error."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message, index)
        self.message = message
        self.index = index


@dataclass(eq=False, slots=True)
class Statement:
    """One top-level statement and the script state right before it."""

    ordinal: int
    node: ast.Node
    start: int  # first token of the statement
    end: int
    offset: int  # added to node locations, which are relative to a re-parsed piece of text
    text: str  # the whole script's
    in_transaction: bool  # an explicit BEGIN is open
    lock_timeout: bool  # a non-zero lock_timeout is in effect
    nodes: dict[type, list[ast.Node]]
    names_masked: bool = False  # non-ASCII characters of its names read as "x" (see _reparse)

    @property
    def sql(self) -> str:
        """The statement's text, from its first token to its end (without the semicolon)."""
        return self.text[self.start : self.end].rstrip()

    def find(self, kind: type[N]) -> list[N]:
        """Every node of this type anywhere in the statement, in tree order."""
        return self.nodes.get(kind, [])  # type: ignore[return-value]

    def at(self, node: ast.Node | None = None) -> int:
        """Character index of node (when it has a known location), else of the statement."""
        location = getattr(node, "location", None)
        return self.start if location is None or location < 0 else self.offset + location


@dataclass(eq=False)
class Script:
    text: str
    statements: list[Statement]
    created: dict[str, int] = field(default_factory=dict)  # relation key -> ordinal creating it
    ends_in_transaction: bool = False  # an explicit BEGIN is still open after the last statement
    _found: dict[type, list[tuple[Statement, Any]]] = field(default_factory=dict, repr=False)
    _top: dict[type, list[tuple[Statement, Any]]] = field(default_factory=dict, repr=False)

    @cached_property
    def existing_alters(self) -> list[tuple[Statement, str, ast.AlterTableCmd]]:
        """(statement, table, command) of every ALTER TABLE command on a table the script did not create."""
        return [
            (stmt, table, cmd)
            for stmt, _ in self.top(ast.AlterTableStmt)
            if (table := altered_table(stmt)) is not None and not self.is_new(table, stmt)
            for cmd in alter_commands(stmt.node)
        ]

    def is_new(self, key: str, stmt: Statement) -> bool:
        """Whether an earlier statement of this script created the relation."""
        return self.created.get(key, stmt.ordinal) < stmt.ordinal

    def find(self, kind: type[N]) -> list[tuple[Statement, N]]:
        """(statement, node) of every node of this type in the script, in statement and tree order."""
        found = self._found.get(kind)
        if found is None:
            found = self._found[kind] = [(stmt, node) for stmt in self.statements for node in stmt.nodes.get(kind, ())]
        return found

    def top(self, kind: type[N]) -> list[tuple[Statement, N]]:
        """(statement, node) of the statements that are of this type (not nested in another)."""
        if not self._top:  # built whole, then published: parses are shared between threads
            top: dict[type, list[tuple[Statement, Any]]] = {}
            for stmt in self.statements:
                top.setdefault(type(stmt.node), []).append((stmt, stmt.node))
            self._top = top
        return self._top.get(kind, [])

    def top_of(self, *kinds: type[ast.Node]) -> list[tuple[Statement, Any]]:
        """(statement, node) of the statements of any of these types, in statement order."""
        found: list[tuple[Statement, Any]] = [pair for kind in kinds for pair in self.top(kind)]
        return sorted(found, key=lambda pair: pair[0].ordinal)

    @cached_property
    def lines(self) -> LineIndex:
        return LineIndex(self.text)


class LineIndex:
    """Character index -> 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = list(accumulate((len(line) + 1 for line in text.split("\n")), initial=0))

    def __call__(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, index)
        return line, index - self._starts[line - 1] + 1


class _Parsed(NamedTuple):
    node: ast.Node
    start: int
    end: int
    offset: int
    names_masked: bool = False


@dataclass(frozen=True)
class _Session:
    """Transaction and lock_timeout state as the script runs."""

    in_transaction: bool = False
    lock_timeout: bool = False
    lock_timeout_local: bool = False  # SET LOCAL: lasts until the transaction ends

    def after(self, node: ast.Node) -> _Session:
        if isinstance(node, ast.TransactionStmt):
            return self._after_transaction(node)
        if isinstance(node, ast.VariableSetStmt) and (
            node.name == "lock_timeout" or node.kind == VariableSetKind.VAR_RESET_ALL
        ):
            return self._after_set(node)
        return self

    def _after_transaction(self, node: ast.TransactionStmt) -> _Session:
        kind = node.kind
        if opens_transaction(node):
            return _Session(True, self.lock_timeout, self.lock_timeout_local)
        ends = (TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK)
        if (kind in ends and not node.chain) or kind == TransactionStmtKind.TRANS_STMT_PREPARE:
            return _Session(False, self.lock_timeout and not self.lock_timeout_local)
        return self

    def _after_set(self, node: ast.VariableSetStmt) -> _Session:
        if node.kind == VariableSetKind.VAR_SET_VALUE:
            if node.is_local and not self.in_transaction:
                return self  # PostgreSQL ignores SET LOCAL outside a transaction block
            on = not _is_zero(node.args)
            return _Session(self.in_transaction, on, on and bool(node.is_local))
        if node.kind == VariableSetKind.VAR_SET_CURRENT:
            return self
        return _Session(self.in_transaction)  # SET ... TO DEFAULT, RESET, RESET ALL


def opens_transaction(node: ast.TransactionStmt) -> bool:
    """BEGIN or START TRANSACTION."""
    return node.kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)


def _is_zero(args: tuple[ast.Node, ...] | None) -> bool:
    value = getattr(args[0], "val", None) if args else None
    text = str(getattr(value, "ival", getattr(value, "sval", getattr(value, "fval", "1"))))
    return _ZERO_DURATION.fullmatch(text.lower()) is not None


def parse_script(text: str) -> Script:
    """Parse and index text (at most 2 MiB, see _PARSER_STACK_BYTES); raises SqlSyntaxError."""
    invalid = _INVALID_CHARACTER.search(text)
    if invalid:
        raise SqlSyntaxError(f"invalid character U+{ord(invalid.group()):04X} in SQL text", invalid.start())
    script = Script(text, [])
    session = _Session()
    for ordinal, parsed in enumerate(on_parser_stack(_parse, text)):
        start = first_token(text, parsed.start)
        stmt = Statement(
            ordinal=ordinal,
            node=parsed.node,
            start=start,
            end=parsed.end,
            offset=parsed.offset,
            text=text,
            in_transaction=session.in_transaction,
            lock_timeout=session.lock_timeout,
            nodes=collect(parsed.node),
            names_masked=parsed.names_masked,
        )
        script.statements.append(stmt)
        if type(stmt.node) in _CREATING:
            for key in _created_relations(stmt.node, script, stmt):
                script.created.setdefault(key, ordinal)
        session = session.after(stmt.node)
    script.ends_in_transaction = session.in_transaction
    return script


def on_parser_stack(function: Callable[[str], T], text: str) -> T:
    """function(text), which parses text with pglast, on a stack that fits any tree pglast builds from it:
    the caller's for a small text, else a parser thread's (see _on_deep_stack)."""
    if len(text) <= _INLINE_PARSE_BYTES and len(text.encode("utf-8", "surrogatepass")) <= _INLINE_PARSE_BYTES:
        return function(text)
    return _on_deep_stack(function, text)


def _on_deep_stack(function: Callable[[str], T], argument: str) -> T:
    """function(argument) in a thread whose stack fits any tree pglast builds from a reviewable script.

    The parser threads are kept (they idle on a queue) and started while the process-wide stack size is
    set: a thread takes its stack size when it starts, so every submit sets it for the thread it may start.
    A forked child starts its own pool (the parent's threads do not exist in it).
    """
    with _stack_size_lock:
        global _parsers, _parsers_pid
        if _parsers is None or _parsers_pid != os.getpid():
            _parsers = ThreadPoolExecutor(max_workers=_PARSER_THREADS, thread_name_prefix="plancheck-parse")
            _parsers_pid = os.getpid()
        previous = threading.stack_size(_PARSER_STACK_BYTES)
        try:
            future = _parsers.submit(function, argument)
        finally:
            threading.stack_size(previous)
    return future.result()


_parsers: ThreadPoolExecutor | None = None
_parsers_pid = 0


def _parse(text: str) -> list[_Parsed]:
    try:
        return _parse_masked(text)
    except ParseError:
        pass  # report the error as found in the original text, with its real message
    try:
        return [_bounds(raw, len(text)) for raw in parse_sql(text)]
    except ParseError as error:
        message, index = error.args[0], error.args[1]
        raise SqlSyntaxError(message, len(text) if index is None else index) from None


def _parse_masked(text: str) -> list[_Parsed]:
    """Parse in about linear time (see lexer): non-ASCII characters in literals and comments are
    masked; if non-ASCII identifiers would still make pglast slow, statement bounds come from an
    all-ASCII copy and each statement is re-parsed alone to get its real names."""
    masked = lexer.mask_literals(text)
    if _offset_mapping_cost(masked) <= _OFFSET_MAPPING_BUDGET:
        return [_bounds(raw, len(text)) for raw in parse_sql(masked)]
    return [_reparse(masked, _bounds(raw, len(text))) for raw in parse_sql(lexer.mask_all(masked))]


def offset_mapping_affordable(text: str) -> bool:
    """Whether pglast can map text's byte offsets to characters quickly enough (see _offset_mapping_cost)."""
    return _offset_mapping_cost(text) <= _OFFSET_MAPPING_BUDGET


def _offset_mapping_cost(text: str) -> int:
    """Upper bound of pglast's work to map byte offsets to characters: locations x multi-byte bytes."""
    return len(text) * (len(text.encode()) - len(text))


def parse_sql(text: str) -> tuple[ast.RawStmt, ...]:
    """pglast.parse_sql(text), about 3 times faster (see plain_node_building)."""
    with plain_node_building():
        return tuple(pglast.parse_sql(text))


@contextmanager
def plain_node_building() -> Iterator[None]:
    """While any thread is inside, pglast assigns node attributes plainly.

    pglast builds its tree in C, but assigns every attribute through ast.Node.__setattr__, which checks
    and coerces the value in Python: 85 % of pglast.parse_sql. Values coming from the C parser already
    have the right types (tests/unit/rules/test_script_context.py compares both trees), so the check is
    switched off while parsing. The switch is process-wide, and costs Python about 0.2 ms (it updates
    every node class and their caches): a caller with many sheets to parse (`plancheck review FILE…`)
    enters once for all of them. No other code of this process builds pglast nodes by hand meanwhile
    (a node built so would skip pglast's coercion of its values).
    """
    global _plain_users
    with _plain_lock:
        if _plain_users == 0:
            ast.Node.__setattr__ = object.__setattr__  # type: ignore[method-assign,assignment]
        _plain_users += 1
    try:
        yield
    finally:
        with _plain_lock:
            _plain_users -= 1
            if _plain_users == 0:
                ast.Node.__setattr__ = _VALIDATING_SETATTR  # type: ignore[method-assign]


_VALIDATING_SETATTR = ast.Node.__setattr__
_plain_lock = threading.Lock()
_plain_users = 0  # callers inside plain_node_building


def _bounds(raw: ast.RawStmt, length: int) -> _Parsed:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else length
    return _Parsed(_statement_node(raw), start, end, 0)


def _statement_node(raw: ast.RawStmt) -> ast.Node:
    assert raw.stmt is not None  # the parser never returns an empty RawStmt
    return raw.stmt


def _reparse(masked: str, parsed: _Parsed) -> _Parsed:
    piece = masked[parsed.start : parsed.end]
    if piece.isascii():
        return parsed  # its names are ASCII: exact already
    if _offset_mapping_cost(piece) > _OFFSET_MAPPING_BUDGET:
        return _Parsed(parsed.node, parsed.start, parsed.end, parsed.offset, names_masked=True)  # too slow
    (raw,) = parse_sql(piece)
    return _Parsed(_statement_node(raw), parsed.start, parsed.end, parsed.start)


def first_token(text: str, index: int) -> int:
    """Index of the first character at or after index that is not whitespace or a comment."""
    while True:
        skipped = _SKIP.match(text, index)
        if skipped:
            index = skipped.end()
        elif text.startswith("/*", index):
            index = lexer.block_comment_end(text, index)
        else:
            return index


_CREATING = frozenset(
    {
        ast.CreateStmt,
        ast.CreateTableAsStmt,
        ast.SelectStmt,
        ast.ViewStmt,
        ast.CreateSeqStmt,
        ast.IndexStmt,
        ast.RenameStmt,
    }
)  # the statements _created_relations reads


def _created_relations(node: ast.Node, script: Script, stmt: Statement) -> Iterator[str]:
    """Keys of the relations (tables, indexes, views, sequences share one namespace) node surely creates:
    not with IF NOT EXISTS or OR REPLACE, after which the relation may be an existing one."""
    if getattr(node, "if_not_exists", False) or getattr(node, "replace", False):
        return
    if isinstance(node, ast.CreateStmt):
        yield relation_key(node.relation)
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        yield relation_key(node.into.rel)
    elif isinstance(node, ast.SelectStmt) and node.intoClause is not None:
        yield relation_key(node.intoClause.rel)
    elif isinstance(node, ast.ViewStmt):
        yield relation_key(node.view)
    elif isinstance(node, ast.CreateSeqStmt):
        yield relation_key(node.sequence)
    elif isinstance(node, ast.IndexStmt) and node.idxname and node.relation is not None:
        yield key(node.relation.schemaname, node.idxname)
    elif (
        isinstance(node, ast.RenameStmt)
        and node.relation
        and node.subname is None
        and script.is_new(relation_key(node.relation), stmt)
    ):
        yield key(node.relation.schemaname, node.newname)


# --- AST helpers shared by the rules ---------------------------------------------------------

SERIAL_TYPES = frozenset({"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"})


# pglast types every attribute as optional; these helpers read them with their empty value instead,
# so the rules never handle None themselves.


def key(schema: str | None, name: str | None) -> str:
    """Relation key: the name, schema-qualified unless the schema is public."""
    name = name or ""
    return name if schema in (None, "public") else f"{schema}.{name}"


def relation_key(relation: ast.RangeVar | None) -> str:
    """Relation key of a RangeVar ("" for none)."""
    return key(relation.schemaname, relation.relname) if relation is not None else ""


def items(values: tuple[N, ...] | None) -> tuple[N, ...]:
    """A list attribute of a node, empty when the parser left it out."""
    return values or ()


def alter_commands(node: ast.Node) -> tuple[ast.AlterTableCmd, ...]:
    """The commands of an ALTER TABLE (none for any other statement)."""
    if not isinstance(node, ast.AlterTableStmt):
        return ()
    return tuple(cmd for cmd in node.cmds or () if isinstance(cmd, ast.AlterTableCmd))


def last_field(ref: ast.ColumnRef) -> ast.Node | None:
    """The last part of a column reference: the column's String, or A_Star in t.*."""
    fields = ref.fields or ()
    return fields[-1] if fields else None


def column_of(cmd: ast.AlterTableCmd) -> ast.ColumnDef | None:
    """The column definition an ALTER TABLE command carries (ADD COLUMN, ALTER COLUMN ... TYPE)."""
    return cmd.def_ if isinstance(cmd.def_, ast.ColumnDef) else None


def constraint_of(node: ast.AlterTableCmd | ast.AlterDomainStmt) -> ast.Constraint | None:
    """The constraint an ALTER TABLE command or ALTER DOMAIN carries (ADD CONSTRAINT)."""
    return node.def_ if isinstance(node.def_, ast.Constraint) else None


def constraints(column: ast.ColumnDef) -> tuple[ast.Constraint, ...]:
    return tuple(c for c in column.constraints or () if isinstance(c, ast.Constraint))


def relation_name(relation: ast.RangeVar | None) -> str | None:
    """The unqualified name of a relation, as PostgreSQL builds generated names from it."""
    return relation.relname if relation is not None else None


def names_key(names: Any) -> str:
    """Relation key of a qualified name list, as in DROP TABLE s.t."""
    schema = getattr(names[-2], "sval", None) if len(names) > 1 else None
    return key(schema, getattr(names[-1], "sval", None))


def last_name(names: tuple[ast.Node, ...] | None) -> str:
    """Unqualified name of a type or function: pg_catalog.timestamp -> timestamp."""
    return getattr(names[-1], "sval", "") if names else ""


def type_name(column: ast.ColumnDef) -> str:
    """Unqualified type name of a column definition: bigint -> int8, timestamp(3) -> timestamp."""
    return last_name(column.typeName.names) if column.typeName is not None else ""


def walk(root: Any) -> Iterator[ast.Node]:
    """Every node under root (a node or a tuple of nodes), root first, depth first, except value nodes
    (constants and names: A_Const, String, Integer, ...), which rules read from their parents.

    It runs on every node of every statement (`collect`), hence the bound methods and cached getters;
    value nodes are nearly half of all nodes.
    """
    stack: list[Any] = [root]
    pop, push, extend, known = stack.pop, stack.append, stack.extend, _CHILDREN.get
    while stack:
        item = pop()
        cls = type(item)
        if cls is tuple:
            extend(item[::-1])
            continue
        entry = known(cls) or _children(cls)
        if entry is _NOT_WALKED:
            continue  # None (an absent child) or a value node
        yield item
        children, many = entry
        if children is None:
            continue
        if many:
            extend(children(item)[::-1])  # None children are popped and skipped
        else:
            push(children(item))


def collect(root: ast.Node) -> dict[type, list[ast.Node]]:
    """Every node under root grouped by type, in tree order."""
    nodes: dict[type, list[ast.Node]] = {}
    for node in walk(root):
        found = nodes.get(type(node))
        if found is None:
            nodes[type(node)] = [node]
        else:
            found.append(node)
    return nodes


def _children(cls: type) -> tuple[Callable[[ast.Node], Any] | None, bool]:
    """A getter of cls's child slots (returning a tuple when many) and whether there are many; _NOT_WALKED for
    what walk does not yield."""
    found = _CHILDREN.get(cls)
    if found is None:
        if not issubclass(cls, ast.Node) or cls in _VALUE_NODES:
            found = _CHILDREN[cls] = _NOT_WALKED
        else:
            slots = _child_slots(cls)
            found = _CHILDREN[cls] = (operator.attrgetter(*slots) if slots else None), len(slots) > 1
    return found


_NOT_WALKED: tuple[None, bool] = (None, False)
_CHILDREN: dict[type, tuple[Callable[[ast.Node], Any] | None, bool]] = {}
_VALUE_NODES = frozenset({ast.A_Const, ast.String, ast.Integer, ast.Float, ast.Boolean, ast.BitString})


def _child_slots(cls: type) -> tuple[str, ...]:
    """Attributes of cls that can hold nodes (pointers and lists), skipping scalars and strings."""
    declared = getattr(cls, "__slots__", None)
    slots: dict[str, Any] = declared if isinstance(declared, dict) else {}
    return tuple(
        name
        for name, info in slots.items()
        if (c_type := str(getattr(info, "c_type", info))) in ("ValUnion", "CreateStmt")
        or (c_type.endswith("*") and c_type not in ("char*", "Bitmapset*"))
    )


_FALSE = frozenset({"false", "off", "no", "0", "f", "n"})


def option_on(options: tuple[ast.DefElem, ...] | None, name: str) -> bool:
    """Whether a list of utility options, as in VACUUM (FULL) or REINDEX (CONCURRENTLY), turns name on."""
    for option in options or ():
        if option.defname == name:
            value = option.arg
            off = str(getattr(value, "sval", "")).lower() in _FALSE or getattr(value, "ival", None) == 0
            return not off
    return False


def reindex_concurrently(node: ast.ReindexStmt) -> bool:
    return option_on(node.params, "concurrently")


def altered_table(stmt: Statement) -> str | None:
    """Key of the table an ALTER TABLE statement changes; None for any other statement."""
    node = stmt.node
    if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        return relation_key(node.relation)
    return None


def column_types(script: Script) -> Iterator[tuple[Statement, ast.ColumnDef, str, str]]:
    """(statement, definition, column name, unqualified type name) of every column defined or retyped."""
    retyped = {id(cmd.def_): cmd.name for _, cmd in script.find(ast.AlterTableCmd)}
    for stmt, column in script.find(ast.ColumnDef):
        if column.typeName is not None:
            yield stmt, column, column.colname or retyped.get(id(column)) or "?", type_name(column)
