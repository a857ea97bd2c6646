"""A read-only session on a target database: the only place plancheck talks to a target.

Checks must never change a target. This module guarantees it by structure:

* the session runs in a READ ONLY transaction on a connection opened with
  `default_transaction_read_only` (verified before use), and is always rolled back;
* it sends only catalog SELECTs it builds itself and `EXPLAIN (FORMAT JSON) <statement>` without
  ANALYZE, so the plan's SQL is planned, never executed;
* a statement reaches EXPLAIN only after pglast parsed it as exactly one SELECT/INSERT/UPDATE/DELETE/
  MERGE, and it is sent over the extended protocol, where the server refuses a second statement;
* statement, lock and idle-in-transaction timeouts, given as connection options, bound how long a
  target can hold a check up;
* every EXPLAIN runs in a transaction block that is rolled back, so nothing planning does (a STABLE
  function's `set_config(…, false)`) outlives it;
* a connection whose session ended cleanly may wait idle, briefly, for the next check of the same
  target, after DISCARD ALL and a check that its safety settings are back; any failure or cancel
  closes it.

Target trouble (unreachable, authentication, timeouts, cancel) raises `TargetError`, whose text has
been redacted of the target's password.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pglast
import psycopg
from pglast import ast
from psycopg import errors
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from plancheck.checks.estimate import Estimate, read_plan
from plancheck.checks.limits import DEFAULT_LIMITS, CheckLimits
from plancheck.checks.target import Target, TargetError
from plancheck.core.conninfo import InvalidURL, connection_params
from plancheck.core.redact import error_line, url_secrets

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


# The most volatile of a function's overloads ('v' > 's' > 'i'), the function found as an unqualified
# call would find it (search_path) or in the named schema; NULL when there is none.
_VOLATILITY_SQL = """
SELECT max(p.provolatile::text)
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %s
  AND CASE WHEN %s::text IS NULL THEN pg_catalog.pg_function_is_visible(p.oid) ELSE n.nspname = %s END
"""


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
        self._estimates: dict[str, Estimate | None] = {}
        self._volatility: dict[tuple[str | None, str], str | None] = {}
        self._cancel_requested = threading.Event()
        self.failure: TargetError | None = None

    @property
    def target_name(self) -> str:
        return self._target.name

    def estimate(self, sql_text: str) -> Estimate | None:
        """Planner's estimate of the rows one statement changes (INSERT: rows it inserts; data-modifying
        CTEs included), with its doubts; a SELECT's rows when it changes none.

        None when the statement is not plannable on the target as it is now (e.g. its table is created
        earlier in the same sheet) or is not a single DML/SELECT statement. Memoised, because the
        advisor and the summary ask about the same statements.
        """
        if sql_text not in self._estimates:
            statement = _explainable_statement(sql_text)
            plan = self._explain(statement) if statement else None
            self._estimates[sql_text] = read_plan(plan) if plan else None
        return self._estimates[sql_text]

    def estimate_rows(self, sql_text: str) -> int | None:
        """The rows of `estimate`, for rules that only compare a count."""
        estimate = self.estimate(sql_text)
        return estimate.rows if estimate else None

    def function_volatility(self, schema: str | None, name: str) -> str | None:
        """pg_proc.provolatile of a function on the target ("i", "s" or "v"; None if it has none), for the
        review's volatile-default rule. Memoised: a script calls the same functions again and again."""
        key = (schema, name)
        if key not in self._volatility:
            self._volatility[key] = self._run_catalog_query(_VOLATILITY_SQL, (name, schema, schema))[0]
        return self._volatility[key]

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
            log.warning("cancel on target %s failed: %s", self.target_name, error_line(error, *self._secrets))

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
        """JSON plan of one statement, in a transaction block that is always rolled back: a SAVEPOINT
        inside the session's transaction, or the transaction itself on a fresh connection. Whatever
        planning did (a STABLE function's `set_config(…, false)`, say) is undone with it."""
        self.raise_if_failed()
        try:
            with self._conn.transaction(force_rollback=True):
                cursor = self._conn.cursor()
                # binary=True forces the extended protocol: the server rejects more than one statement.
                cursor.execute(EXPLAIN + statement, binary=True)
                row = cursor.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._fail(error) from None
        except psycopg.Error as error:
            log.debug("EXPLAIN on %s not possible: %s", self.target_name, error_line(error, *self._secrets))
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

    def verify_read_only(self) -> None:
        """Prove the session is read-only before anything else runs.

        PostgreSQL 14 and later report `default_transaction_read_only` when the connection opens, so
        the proof costs no round trip; an older server is asked.
        """
        reported = self._conn.info.parameter_status("default_transaction_read_only")
        if reported is None:
            reported = self._run_catalog_query("SHOW default_transaction_read_only", ())[0]
        if reported != "on" or not self._conn.read_only:
            raise TargetError(f"{self.target_name}: could not open a read-only transaction")

    @property
    def clean(self) -> bool:
        """No failure and no cancel: the connection may serve the next check of this target."""
        return self.failure is None and not self._cancel_requested.is_set()

    def _fail(self, error: psycopg.Error) -> TargetError:
        """Translate a driver error into a redacted TargetError and remember it: the session is done."""
        message = error_line(error, *self._secrets)
        if self._cancel_requested.is_set():
            failure = _canceled(self.target_name)
        elif isinstance(error, errors.LockNotAvailable):
            failure = TargetError(
                f"{self.target_name}: a table is locked by another session ({message})", title="Lock timeout on target"
            )
        elif isinstance(error, errors.QueryCanceled):
            failure = TargetError(
                f"{self.target_name}: a statement ran longer than {self._statement_timeout_ms} ms ({message})",
                title="Statement timeout on target",
            )
        else:
            failure = TargetError(f"{self.target_name}: {message}", title="Target connection lost")
        self.failure = failure
        return failure


class _IdleConnections:
    """A few idle target connections per process, so the next check of the same target skips the
    connect (about 5 ms here, more over a network), as a connection pool would.

    Only connections whose session ended cleanly come back, rolled back; they idle at most
    `CheckLimits.idle_seconds`, at most `CheckLimits.idle_connections` of them. A forked child
    forgets its parent's entries without touching their sockets.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, float, psycopg.Connection[Any]]] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def take(self, conninfo: str, max_idle_seconds: float) -> psycopg.Connection[Any] | None:
        with self._lock:
            self._forget_if_forked()
            now = time.monotonic()
            for entry in [entry for entry in self._entries if now - entry[1] > max_idle_seconds]:
                self._entries.remove(entry)
                entry[2].close()
            for entry in self._entries:
                if entry[0] == conninfo:
                    self._entries.remove(entry)
                    return entry[2]
        return None

    def give_back(self, conninfo: str, conn: psycopg.Connection[Any], size: int) -> None:
        with self._lock:
            self._forget_if_forked()
            self._entries.append((conninfo, time.monotonic(), conn))
            while len(self._entries) > size:
                self._entries.pop(0)[2].close()

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():
            self._entries, self._pid = [], os.getpid()


_idle = _IdleConnections()


@contextmanager
def open_target_session(target: Target, limits: CheckLimits = DEFAULT_LIMITS) -> Iterator[TargetSession]:
    """Yield a read-only session on `target`; it is always rolled back, and its connection closed or,
    after a clean session whose state could be reset, kept idle for the next check of the same target."""
    safety = {
        "default_transaction_read_only": "on",
        "statement_timeout": str(limits.statement_timeout_ms),
        "lock_timeout": str(limits.lock_timeout_ms),
        "idle_in_transaction_session_timeout": str(limits.idle_in_transaction_ms),
    }
    conninfo = _conninfo(target, safety)
    conn = _take_alive(conninfo, limits.idle_seconds) or _connect(target, conninfo, limits.connect_timeout_s)
    session = TargetSession(conn, target, limits.statement_timeout_ms)
    try:
        session.verify_read_only()
        yield session
    except BaseException:
        conn.close()
        raise
    if session.clean and limits.idle_connections and _reset(conn, safety):
        _idle.give_back(conninfo, conn, limits.idle_connections)
    else:
        conn.close()


def _conninfo(target: Target, safety: dict[str, str]) -> str:
    """The target's connection string, built from keyword parameters, with the session's safety
    settings as server `options`, which the server applies before the first query: no SET round trips."""
    try:
        params = connection_params(target.url)
    except InvalidURL as error:
        raise TargetError(f"{target.name}: the instance URL {error}", title="Target unreachable") from None
    options = " ".join(f"-c {name}={value}" for name, value in safety.items())
    params["options"] = f"{params['options']} {options}" if params.get("options") else options
    params.setdefault("application_name", "plancheck")
    return make_conninfo("", **params)


def _take_alive(conninfo: str, max_idle_seconds: float) -> psycopg.Connection[Any] | None:
    """An idle connection to the same target that still answers, or None."""
    conn = _idle.take(conninfo, max_idle_seconds)
    if conn is None:
        return None
    try:
        conn.execute("SELECT 1")  # opens the session's READ ONLY transaction
    except psycopg.Error:
        conn.close()
        return None
    return conn


def _connect(target: Target, conninfo: str, connect_timeout_s: int) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(conninfo, connect_timeout=connect_timeout_s, autocommit=False)
    except psycopg.Error as error:
        message = error_line(error, *url_secrets(target.url))
        raise TargetError(f"cannot connect to {target.name}: {message}", title="Target unreachable") from None
    conn.read_only = True  # psycopg opens every transaction with BEGIN READ ONLY
    return conn


_SAFETY_SETTINGS_SQL = "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)"


def _reset(conn: psycopg.Connection[Any], safety: dict[str, str]) -> bool:
    """Roll back, drop all session state (DISCARD ALL: settings, advisory locks, temporary tables,
    prepared statements) and prove the safety settings are back; False if the connection cannot be
    trusted with another check."""
    try:
        conn.rollback()
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return False
        conn.autocommit = True  # DISCARD ALL refuses to run inside a transaction block
        conn.execute("DISCARD ALL")
        settings = dict(conn.execute(_SAFETY_SETTINGS_SQL, (list(safety),)).fetchall())
        conn.autocommit = False
    except psycopg.Error:
        return False
    return settings == safety and not conn.broken


def _explainable_statement(sql_text: str) -> str | None:
    """The text of the single plannable statement in `sql_text`, or None if it is anything else."""
    try:
        statements = pglast.parse_sql(sql_text)
    except pglast.parser.ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, _EXPLAINABLE):
        return None
    if isinstance(statements[0].stmt, ast.SelectStmt) and statements[0].stmt.intoClause is not None:
        return None
    # The statement's bounds, stripped, are what pglast.split gives (which would parse it again); the
    # parser reads up to a NUL, if any.
    raw = statements[0]
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(sql_text.partition("\x00")[0])
    return sql_text[start:end].strip()


def _canceled(target_name: str) -> TargetError:
    return TargetError(f"check of {target_name} was canceled", title="Check canceled")
