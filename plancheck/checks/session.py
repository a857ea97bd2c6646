"""A read-only session on a target database: the only place plancheck talks to a target.

Checks must never change a target (DESIGN.md, invariant 9). This module guarantees it by structure:

* the session runs in a READ ONLY transaction (plus `default_transaction_read_only`), verified after
  connecting, and always rolled back and closed;
* it sends only SET, catalog SELECTs it builds itself, and `EXPLAIN (FORMAT JSON) <statement>`
  without ANALYZE, so the plan's SQL is planned, never executed;
* a statement reaches EXPLAIN only after pglast parsed it as exactly one SELECT/INSERT/UPDATE/DELETE/
  MERGE, and it is sent over the extended protocol, where the server refuses a second statement;
* statement, lock and idle-in-transaction timeouts bound how long a target can hold a check up.

Target trouble (unreachable, authentication, timeouts, cancel) raises `TargetError`, whose text has
been redacted of the target's password.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pglast
import psycopg
from pglast import ast
from psycopg import errors, sql

from plancheck.checks.target import Target
from plancheck.redact import redact, url_secrets

log = logging.getLogger(__name__)

EXPLAIN = "EXPLAIN (FORMAT JSON) "
# Statements EXPLAIN can plan without side effects. SELECT … INTO is excluded: it is DDL in disguise.
_EXPLAINABLE = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
_DRIVER_PREFIX = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")

# Row estimate of a table from catalogs only, so it takes no lock and answers even while the table
# is locked: reltuples, or the statistics' live-tuple count when the table was never analyzed
# (reltuples = -1); a partitioned table sums its leaf partitions.
_ROW_ESTIMATE_SQL = """
WITH RECURSIVE rel AS (
    SELECT c.oid, c.relkind, c.reltuples
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm')
  UNION ALL
    SELECT c.oid, c.relkind, c.reltuples
    FROM rel JOIN pg_catalog.pg_inherits i ON i.inhparent = rel.oid
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE rel.relkind = 'p'
)
SELECT count(*),
       coalesce(sum(CASE WHEN reltuples >= 0 THEN reltuples
                         ELSE pg_catalog.pg_stat_get_live_tuples(oid) END) FILTER (WHERE relkind <> 'p'), 0)
FROM rel
"""


class TargetError(Exception):
    """The target could not be checked; `title` names the kind of trouble, the message is redacted."""

    def __init__(self, message: str, title: str = "Target error") -> None:
        super().__init__(message)
        self.title = title


def libpq_url(url: str) -> str:
    """`postgresql+psycopg://…` (SQLAlchemy form) -> `postgresql://…`, which libpq understands."""
    return _DRIVER_PREFIX.sub("postgresql://", url, count=1)


class TargetSession:
    """An open READ ONLY transaction on one target; create it with `open_target_session`."""

    def __init__(self, conn: psycopg.Connection[Any], target: Target, statement_timeout_ms: int) -> None:
        self._conn = conn
        self._target = target
        self._statement_timeout_ms = statement_timeout_ms
        self._secrets = url_secrets(target.url)
        self._estimates: dict[str, int | None] = {}
        self._cancel_requested = threading.Event()
        self.failure: TargetError | None = None

    @property
    def target_name(self) -> str:
        return self._target.name

    def estimate_rows(self, sql_text: str) -> int | None:
        """Planner's estimate of the rows one DML statement touches (INSERT: rows it inserts).

        None when the statement is not plannable on the target as it is now (e.g. its table is created
        earlier in the same sheet) or is not a single DML/SELECT statement. Memoised, because the
        advisor and the summary ask about the same statements.
        """
        if sql_text not in self._estimates:
            statement = _explainable_statement(sql_text)
            plan = self._explain(statement) if statement else None
            self._estimates[sql_text] = _plan_rows(plan) if plan else None
        return self._estimates[sql_text]

    def table_row_estimate(self, schema: str, table: str) -> int | None:
        """Estimated row count of an existing table (catalog statistics, no lock); None if it does not exist."""
        found, rows = self._run_catalog_query(_ROW_ESTIMATE_SQL, (schema, table))
        return round(rows) if found else None

    def cancel(self) -> None:
        """Abort the running EXPLAIN, if any. Thread-safe: meant for the caller's heartbeat thread."""
        self._cancel_requested.set()
        try:
            self._conn.cancel_safe(timeout=5.0)
        except psycopg.Error as error:
            log.warning("cancel on target %s failed: %s", self.target_name, self._redact(str(error)))

    def raise_if_failed(self) -> None:
        """Re-raise target trouble a caller may have swallowed (the advisor calls estimate_rows blindly).

        A cancel that arrived between two queries fails the session here, since no query was running
        to be interrupted.
        """
        if self.failure is None and self._cancel_requested.is_set():
            self.failure = _canceled(self.target_name)
        if self.failure is not None:
            raise self.failure

    def _explain(self, statement: str) -> dict[str, Any] | None:
        """JSON plan of one statement, inside a SAVEPOINT so a failing EXPLAIN keeps the transaction usable."""
        self.raise_if_failed()
        try:
            with self._conn.transaction():
                cursor = self._conn.cursor()
                # binary=True forces the extended protocol: the server rejects more than one statement.
                cursor.execute(EXPLAIN + statement, binary=True)
                row = cursor.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._fail(error) from None
        except psycopg.Error as error:
            log.debug("EXPLAIN on %s not possible: %s", self.target_name, self._redact(_first_line(error)))
            return None
        return row[0][0]["Plan"] if row else None

    def _run_catalog_query(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        self.raise_if_failed()
        try:
            row = self._conn.execute(query, params).fetchone()
        except psycopg.Error as error:
            raise self._fail(error) from None
        assert row is not None
        return tuple(row)

    def _configure(self, lock_timeout_ms: int, idle_timeout_ms: int) -> None:
        """Set the timeouts and prove the transaction is read-only before anything else runs."""
        settings = {
            "statement_timeout": self._statement_timeout_ms,
            "lock_timeout": lock_timeout_ms,
            "idle_in_transaction_session_timeout": idle_timeout_ms,
            "default_transaction_read_only": "on",
        }
        try:
            for name, value in settings.items():
                self._conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(str(value))))
            read_only = self._conn.execute("SHOW transaction_read_only").fetchone()
        except psycopg.Error as error:
            raise self._fail(error) from None
        if read_only != ("on",):
            raise TargetError(f"{self.target_name}: could not open a read-only transaction")

    def _fail(self, error: psycopg.Error) -> TargetError:
        """Translate a driver error into a redacted TargetError and remember it: the session is done."""
        message = self._redact(_first_line(error))
        if self._cancel_requested.is_set():
            failure = _canceled(self.target_name)
        elif isinstance(error, errors.LockNotAvailable):
            failure = TargetError(f"{self.target_name}: a table is locked by another session ({message})",
                                  title="Lock timeout on target")
        elif isinstance(error, errors.QueryCanceled):
            failure = TargetError(
                f"{self.target_name}: a statement ran longer than {self._statement_timeout_ms} ms ({message})",
                title="Statement timeout on target",
            )
        else:
            failure = TargetError(f"{self.target_name}: {message}", title="Target connection lost")
        self.failure = failure
        return failure

    def _redact(self, text: str) -> str:
        return redact(text, *self._secrets)


@contextmanager
def open_target_session(
    target: Target,
    statement_timeout_ms: int = 5000,
    lock_timeout_ms: int = 1000,
    connect_timeout_s: int = 5,
    idle_timeout_ms: int = 60_000,
) -> Iterator[TargetSession]:
    """Connect to `target` and yield a read-only session; always rolls back and closes."""
    conn = _connect(target, connect_timeout_s)
    try:
        conn.read_only = True  # psycopg opens the implicit transaction with BEGIN READ ONLY
        session = TargetSession(conn, target, statement_timeout_ms)
        session._configure(lock_timeout_ms, idle_timeout_ms)
        yield session
    finally:
        _close(conn)


def _connect(target: Target, connect_timeout_s: int) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            libpq_url(target.url), connect_timeout=connect_timeout_s, application_name="plancheck", autocommit=False
        )
    except psycopg.Error as error:
        message = redact(_first_line(error), *url_secrets(target.url))
        raise TargetError(f"cannot connect to {target.name}: {message}", title="Target unreachable") from None


def _close(conn: psycopg.Connection[Any]) -> None:
    """Roll back whatever the session did and close; a broken connection is simply closed."""
    try:
        conn.rollback()
    except psycopg.Error:
        pass
    finally:
        conn.close()


def _explainable_statement(sql_text: str) -> str | None:
    """The text of the single plannable statement in `sql_text`, or None if it is anything else."""
    try:
        statements = pglast.parse_sql(sql_text)
        slices = pglast.split(sql_text, only_slices=True)
    except pglast.parser.ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, _EXPLAINABLE):
        return None
    if isinstance(statements[0].stmt, ast.SelectStmt) and statements[0].stmt.intoClause is not None:
        return None
    return sql_text[slices[0]]


def _plan_rows(plan: dict[str, Any]) -> int:
    """Rows of a plan; for DML the ModifyTable node reports 0 (no RETURNING), so use what it consumes."""
    if plan["Node Type"] == "ModifyTable" and plan.get("Plans"):
        plan = plan["Plans"][0]
    return round(plan["Plan Rows"])


def _canceled(target_name: str) -> TargetError:
    return TargetError(f"check of {target_name} was canceled", title="Check canceled")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
