"""The parsed script every rule reads: statements, their nodes by type, and what the script did before each.

The script is parsed and walked once; rules look nodes up by type instead of walking again. All
indexes are character indexes into the original text (pglast converts the parser's byte offsets).
"""

from __future__ import annotations

import bisect
import operator
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

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


@dataclass(eq=False)
class Statement:
    """One top-level statement and the script state right before it."""

    ordinal: int
    node: ast.Node
    start: int  # first token of the statement
    end: int
    offset: int  # added to node locations, which are relative to a re-parsed piece of text
    sql: str
    in_transaction: bool  # an explicit BEGIN is open
    lock_timeout: bool  # a non-zero lock_timeout is in effect
    nodes: dict[type, list[ast.Node]]
    names_masked: bool = False  # non-ASCII characters of its names read as "x" (see _reparse)

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

    def is_new(self, key: str, stmt: Statement) -> bool:
        """Whether an earlier statement of this script created the relation."""
        return self.created.get(key, stmt.ordinal) < stmt.ordinal

    def find(self, kind: type[N]) -> list[tuple[Statement, N]]:
        """(statement, node) of every node of this type in the script, in statement and tree order."""
        found = self._found.get(kind)
        if found is None:
            found = self._found[kind] = [(stmt, node) for stmt in self.statements for node in stmt.find(kind)]
        return found

    def top(self, kind: type[N]) -> list[tuple[Statement, N]]:
        """(statement, node) of the statements that are of this type (not nested in another)."""
        return [(stmt, node) for stmt, node in self.find(kind) if node is stmt.node]

    @cached_property
    def lines(self) -> LineIndex:
        return LineIndex(self.text)


class LineIndex:
    """Character index -> 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, index)
        return line, index - self._starts[line - 1] + 1


@dataclass(frozen=True)
class _Parsed:
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
            sql=text[start : parsed.end].rstrip(),
            in_transaction=session.in_transaction,
            lock_timeout=session.lock_timeout,
            nodes=collect(parsed.node),
            names_masked=parsed.names_masked,
        )
        script.statements.append(stmt)
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
    """function(argument) in a thread whose stack fits any tree pglast builds from a reviewable script."""
    with _stack_size_lock:  # the stack size is process-wide, applied to threads started while it is set
        previous = threading.stack_size(_PARSER_STACK_BYTES)
        try:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plancheck-parse")
            future = executor.submit(function, argument)
        finally:
            threading.stack_size(previous)
    try:
        return future.result()
    finally:
        executor.shutdown()


def _parse(text: str) -> list[_Parsed]:
    try:
        return _parse_masked(text)
    except ParseError:
        pass  # report the error as found in the original text, with its real message
    try:
        return [_bounds(raw, len(text)) for raw in pglast.parse_sql(text)]
    except ParseError as error:
        message, index = error.args[0], error.args[1]
        raise SqlSyntaxError(message, len(text) if index is None else index) from None


def _parse_masked(text: str) -> list[_Parsed]:
    """Parse in about linear time (see lexer): non-ASCII characters in literals and comments are
    masked; if non-ASCII identifiers would still make pglast slow, statement bounds come from an
    all-ASCII copy and each statement is re-parsed alone to get its real names."""
    masked = lexer.mask_literals(text)
    if _offset_mapping_cost(masked) <= _OFFSET_MAPPING_BUDGET:
        return [_bounds(raw, len(text)) for raw in pglast.parse_sql(masked)]
    return [_reparse(masked, _bounds(raw, len(text))) for raw in pglast.parse_sql(lexer.mask_all(masked))]


def offset_mapping_affordable(text: str) -> bool:
    """Whether pglast can map text's byte offsets to characters quickly enough (see _offset_mapping_cost)."""
    return _offset_mapping_cost(text) <= _OFFSET_MAPPING_BUDGET


def _offset_mapping_cost(text: str) -> int:
    """Upper bound of pglast's work to map byte offsets to characters: locations x multi-byte bytes."""
    return len(text) * (len(text.encode()) - len(text))


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
    (raw,) = pglast.parse_sql(piece)
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
    elif isinstance(node, ast.RenameStmt) and node.relation and node.subname is None:
        if script.is_new(relation_key(node.relation), stmt):
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
    """Every node under root (a node or a tuple of nodes), root first, depth first.

    It runs on every node of every statement (`collect`), hence the bound methods and cached getters.
    """
    stack: list[Any] = [root]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        if isinstance(item, tuple):
            extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            children, many = _children(type(item))
            if children is None:
                continue
            if many:
                extend(reversed(children(item)))  # None children are popped and skipped
            else:
                push(children(item))


def collect(root: ast.Node) -> dict[type, list[ast.Node]]:
    """Every node under root grouped by type, in tree order."""
    nodes: dict[type, list[ast.Node]] = {}
    for node in walk(root):
        nodes.setdefault(type(node), []).append(node)
    return nodes


def _children(cls: type) -> tuple[Callable[[ast.Node], Any] | None, bool]:
    """A getter of cls's child slots (returning a tuple when many) and whether there are many."""
    found = _CHILDREN.get(cls)
    if found is None:
        slots = _child_slots(cls)
        found = _CHILDREN[cls] = (operator.attrgetter(*slots) if slots else None), len(slots) > 1
    return found


_CHILDREN: dict[type, tuple[Callable[[ast.Node], Any] | None, bool]] = {}


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


def existing_table_alters(script: Script) -> Iterator[tuple[Statement, str, ast.AlterTableCmd]]:
    """(statement, table, command) of every ALTER TABLE command on a table the script did not create."""
    for stmt in script.statements:
        table = altered_table(stmt)
        if table is not None and not script.is_new(table, stmt):
            for cmd in alter_commands(stmt.node):
                yield stmt, table, cmd


def column_types(script: Script) -> Iterator[tuple[Statement, ast.ColumnDef, str, str]]:
    """(statement, definition, column name, unqualified type name) of every column defined or retyped."""
    for stmt in script.statements:
        retyped = {id(cmd.def_): cmd.name for cmd in stmt.find(ast.AlterTableCmd)}
        for column in stmt.find(ast.ColumnDef):
            if column.typeName is not None:
                name = column.colname or retyped.get(id(column)) or "?"
                yield stmt, column, name, type_name(column)
