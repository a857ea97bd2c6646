"""3. History: claim latency on an empty history against 1,000,000 finished runs.

The claim is plancheck's own, `plancheck.store.claims.claim`, on a metadata database migrated to
Alembic head: a transaction-level advisory lock (concurrent claimers never count the same free slot
twice), then one UPDATE for AVAILABLE chunks and one for AVAILABLE runs, each
`WHERE id = ANY(ARRAY(SELECT ... ORDER BY id LIMIT <free slots> FOR UPDATE SKIP LOCKED))`, where
the free slots are the live workers' slots (worker_slots) less the runs and chunks executing. A
stand-in worker row lends 10,000 slots (more than every RUNNING row here), so each claim gets its
whole batch. Each claim runs in its own transaction, is timed client-side around `claims.claim`
(statements and round trips), and is rolled back, so every claim sees the same backlog: the oldest
rows of the table are finished or running, the backlog sits at the tail.

* empty: only the backlog (1,000 AVAILABLE runs);
* history: 1,000 RUNNING runs (started, lease in the future) at the head of the table, then
  1,000,000 DONE runs with a small result each, all inserted with generate_series, then the same
  1,000 AVAILABLE runs; VACUUM ANALYZE afterwards (what autovacuum would do to a table this size);
* history + big backlog: the same plus 100,000 more AVAILABLE runs, ANALYZEd again: the case where
  statistics see many AVAILABLE rows and a planner might leave the partial index;
* history + chunks: that table plus 100 fanned-out RUNNING runs with 20 chunks each, the older
  1,000 chunks RUNNING and the newer 1,000 AVAILABLE: chunks are claimed first, so this times the
  chunk claim; then one more fanned-out run with 10,000 AVAILABLE chunks (a plan of 200,000
  targets at the default chunk size);
* empty history + big backlog: a burst of 100,000 plans on a young table, the backlog being most
  of the table (measured in the first database after the empty-history case, listed last).

For every case, the EXPLAIN (ANALYZE, BUFFERS) of both statements' inner SELECTs is printed (in
rolled-back transactions) and a table names what each scan used: the claims must stay on the
partial indexes that hold only claimable rows in id order (plan_check_run_claimable_idx,
plan_check_chunk_claimable_idx) whatever the statistics say. Another table times the claim's
parts alone: the lock, the chunk statement and the run statement.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, text

from bench.common import LENDER, Servers, emit, median, percentile, progress, table

LEASE = 15.0  # plancheck's default lease; claims made by workers also count slots seen within it
LENT_SLOTS = 10_000

_HISTORY = text(
    """
    INSERT INTO plan_check_run (plan_id, plan_version, status, result, attempt, worker, lease_expires_at,
                                claimed_at, started_at, finished_at, targets_total, targets_done,
                                created_at, updated_at)
    SELECT g, 1,
           CASE WHEN g <= :running THEN 'RUNNING' ELSE 'DONE' END,
           CASE WHEN g <= :running THEN '{}'::jsonb ELSE jsonb_build_object('results', jsonb_build_array(
               jsonb_build_object('status', 'SUCCESS', 'type', 'STATEMENT_ADVISE', 'target', 'local/db_' || g % 50,
                                  'title', 'OK', 'content', '1 statement reviewed, no findings', 'code', 0),
               jsonb_build_object('status', 'SUCCESS', 'type', 'STATEMENT_SUMMARY_REPORT',
                                  'target', 'local/db_' || g % 50, 'title', 'Summary',
                                  'content', 'ALTER_TABLE: 1; tables: public.items (1,000 rows)', 'code', 0)))
           END,
           1, 'bench@host:' || g % 7,
           CASE WHEN g <= :running THEN now() + interval '1 hour' END,
           t.ts, t.ts + interval '5 ms',
           CASE WHEN g > :running THEN t.ts + interval '60 ms' END,
           1, CASE WHEN g <= :running THEN 0 ELSE 1 END,
           t.ts, t.ts
    FROM generate_series(1, :total) g
    CROSS JOIN LATERAL (SELECT now() - interval '30 days' + g * interval '2 s' AS ts) t
    ORDER BY g
    """
)

_BACKLOG = text(
    """
    INSERT INTO plan_check_run (plan_id, plan_version, status)
    SELECT :offset + g, 1, 'AVAILABLE' FROM generate_series(1, :count) g ORDER BY g
    """
)

# Fanned-out runs (RUNNING, no lease of their own) and their chunks; the chunks of the lower numbers
# get the lower ids and are RUNNING, so the oldest chunk rows are the executing ones.
_CHUNKS = text(
    """
    WITH fanned AS (
        INSERT INTO plan_check_run (plan_id, plan_version, status, fanned_out, attempt, worker, claimed_at,
                                    started_at, targets_total)
        SELECT :offset + g, 1, 'RUNNING', true, 1, 'bench@host:1', now(), now(), :per_run
        FROM generate_series(1, :runs) g ORDER BY g
        RETURNING id, token
    )
    INSERT INTO plan_check_chunk (run_id, run_token, chunk, targets, status, attempt, worker, claimed_at,
                                  started_at, lease_expires_at)
    SELECT f.id, f.token, c, jsonb_build_array(jsonb_build_array('local/db_' || c, 'sheet')),
           CASE WHEN c < :running_per_run THEN 'RUNNING' ELSE 'AVAILABLE' END,
           CASE WHEN c < :running_per_run THEN 1 ELSE 0 END,
           CASE WHEN c < :running_per_run THEN 'bench@host:2' END,
           CASE WHEN c < :running_per_run THEN now() END,
           CASE WHEN c < :running_per_run THEN now() END,
           CASE WHEN c < :running_per_run THEN now() + interval '1 hour' END
    FROM fanned f CROSS JOIN generate_series(0, :per_run - 1) c
    ORDER BY c >= :running_per_run, f.id, c
    """
)

_SCAN = re.compile(r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)(?: Backward)?(?: using (\w+))? on (\w+)")

_TABLES = "plan_check_run, plan_check_chunk"

_COUNTS = text(
    "SELECT (SELECT count(*) FROM plan_check_run) AS runs, (SELECT count(*) FROM plan_check_chunk) AS chunks"
)

# (claim statement, table) pairs of the EXPLAIN check's columns.
_SCANNED = [
    ("runs", "plan_check_run"),
    ("runs", "plan_check_chunk"),
    ("chunks", "plan_check_chunk"),
    ("chunks", "plan_check_run"),
]


def _statements() -> dict[str, TextClause]:
    """plancheck's two claim statements, as the claim runs them."""
    from plancheck.store import claims

    return {"runs": claims._CLAIM_RUNS, "chunks": claims._CLAIM_CHUNKS}


def inner_select(claim_sql: str) -> str:
    """The claim's inner `SELECT ... FOR UPDATE SKIP LOCKED`, cut out of plancheck's statement."""
    start = re.search(r"ANY\(ARRAY\(", claim_sql)
    if start is None:
        raise RuntimeError("cannot find the inner SELECT of the claim statement")
    depth, i = 1, start.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(claim_sql[i], 0)
        i += 1
    return claim_sql[start.end() : i - 1].strip()


def _params(batch: int) -> dict[str, Any]:
    return {"batch": batch, "lease": LEASE, "stale": LEASE}


def explain(engine: Engine, statement: TextClause, batch: int, whole: bool = False) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a claim statement's inner SELECT (or of the whole UPDATE), rolled back."""
    sql = str(statement.text).strip() if whole else inner_select(str(statement.text))
    with engine.connect() as conn, conn.begin() as trans:
        rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS) " + sql), _params(batch)).all()
        trans.rollback()
    return "\n".join(row[0] for row in rows)


def scans(plan: str, table_name: str, empty: bool) -> str:
    """What the plan reads `table_name` with: index names, or 'Seq Scan' (each once, in plan order)."""
    found = [match.group(2) or match.group(1) for match in _SCAN.finditer(plan) if match.group(3) == table_name]
    if empty:
        found = [f"{how} (empty table)" if how == "Seq Scan" else how for how in found]
    return ", ".join(dict.fromkeys(found)) or "-"


def _lend_slots(engine: Engine) -> None:
    """A stand-in worker's slots, seen now (live for a lease: longer than any one timing loop)."""
    from plancheck.store import workers

    with engine.begin() as conn:
        workers.record(conn, LENDER, LENT_SLOTS)


def time_calls(engine: Engine, count: int, call: Callable[[Connection], int]) -> tuple[list[float], int]:
    """Milliseconds of `call` per transaction (each rolled back), and the rows its last call returned."""
    _lend_slots(engine)
    times: list[float] = []
    got = 0
    with engine.connect() as conn:
        warm = 10 if count >= 100 else 3
        for i in range(count + warm):
            trans = conn.begin()
            t0 = time.perf_counter()
            got = call(conn)
            elapsed = time.perf_counter() - t0
            trans.rollback()
            if i >= warm:  # the first few warm the connection and the caches
                times.append(elapsed * 1000)
    return times, got


def _claim(batch: int) -> Callable[[Connection], int]:
    from plancheck.store import claims

    return lambda conn: len(claims.claim(conn, batch, LEASE, LEASE))


def _statement(statement: TextClause, batch: int) -> Callable[[Connection], int]:
    return lambda conn: len(conn.execute(statement, _params(batch)).all())


def _lock(conn: Connection) -> int:
    from plancheck.store import claims

    conn.execute(claims._LOCK, {"key": claims._CLAIM_LOCK_KEY})
    return 0


def _analyze(engine: Engine, vacuum: bool = False) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"{'VACUUM ANALYZE' if vacuum else 'ANALYZE'} {_TABLES}"))


def _case(engine: Engine, name: str, rows: int, claims: int) -> dict[str, Any]:
    """Time plancheck's claim whole and in parts, and EXPLAIN both statements, on the tables as they are."""
    progress(f"history: timing claims, {name}")
    statements = _statements()
    _lend_slots(engine)
    plans = {key: explain(engine, statement, 1) for key, statement in statements.items()}
    with engine.connect() as conn:
        counts = conn.execute(_COUNTS).one()
    one, got_one = time_calls(engine, claims, _claim(1))
    fifty, got_fifty = time_calls(engine, claims // 2, _claim(50))
    parts = {"lock": time_calls(engine, claims, _lock)[0]}
    for key, statement in statements.items():
        parts[key] = time_calls(engine, claims, _statement(statement, 1))[0]
    return {
        "name": name,
        "rows": rows,
        "plans": plans,
        "one": one,
        "fifty": fifty,
        "got": (got_one, got_fifty),
        "parts": parts,
        "claims": claims,
        "empty": {"plan_check_run": counts.runs == 0, "plan_check_chunk": counts.chunks == 0},
    }


def run(servers: Servers, quick: bool) -> None:
    from plancheck.store.db import engine_for, upgrade

    done = 200_000 if quick else 1_000_000
    running_rows = 1_000
    backlog = 1_000
    claims = 200 if quick else 500
    big = 100_000
    fanned_runs, per_run = 100, 20
    big_plan_chunks = 10_000
    cases = []

    with servers.database("hist_empty") as url:
        upgrade(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
        _analyze(engine)
        cases.append(_case(engine, "empty history", backlog, claims))
        with engine.begin() as conn:  # a burst on a young table: the backlog is most of the table
            conn.execute(_BACKLOG, {"offset": 200_000_000, "count": big - backlog})
        _analyze(engine)
        burst = _case(engine, f"empty history, {big:,} AVAILABLE", big, 20)
        engine.dispose()

    with servers.database("hist_running") as url:  # isolates the RUNNING rows from the DONE history
        upgrade(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(_HISTORY, {"running": running_rows, "total": running_rows})
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
        _analyze(engine, vacuum=True)
        cases.append(_case(engine, f"no history, {running_rows:,} RUNNING", running_rows + backlog, claims))
        engine.dispose()

    with servers.database("hist_full") as url:
        upgrade(url)
        engine = engine_for(url)
        progress(f"history: inserting {done:,} DONE + {running_rows:,} RUNNING runs")
        t0 = time.monotonic()
        with engine.begin() as conn:
            conn.execute(_HISTORY, {"running": running_rows, "total": running_rows + done})
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
        _analyze(engine, vacuum=True)
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('plan_check_run'))")).scalar_one()
        build_seconds = time.monotonic() - t0
        total = running_rows + done + backlog
        cases.append(_case(engine, f"{done:,} DONE + {running_rows:,} RUNNING", total, claims))

        with engine.begin() as conn:
            conn.execute(_BACKLOG, {"offset": 200_000_000, "count": big - backlog})
        _analyze(engine)
        total += big - backlog
        cases.append(_case(engine, f"same + {big:,} AVAILABLE", total, 20))

        chunks_total = fanned_runs * per_run
        with engine.begin() as conn:
            conn.execute(
                _CHUNKS,
                {"offset": 300_000_000, "runs": fanned_runs, "per_run": per_run, "running_per_run": per_run // 2},
            )
        _analyze(engine, vacuum=True)
        total += fanned_runs
        cases.append(
            _case(
                engine, f"same + {chunks_total // 2:,} RUNNING, {chunks_total // 2:,} AVAILABLE chunks", total, claims
            )
        )
        with engine.begin() as conn:
            conn.execute(_CHUNKS, {"offset": 400_000_000, "runs": 1, "per_run": big_plan_chunks, "running_per_run": 0})
        _analyze(engine, vacuum=True)
        total += 1
        chunk_case = _case(engine, f"same + 1 run of {big_plan_chunks:,} AVAILABLE chunks", total, claims // 2)
        chunk_whole = {key: explain(engine, statement, 1, whole=True) for key, statement in _statements().items()}
        cases.append(chunk_case)
        engine.dispose()
    cases.append(burst)

    _emit(cases, backlog, big, build_seconds, size)
    for case in cases:
        for key in ("runs", "chunks"):
            print(f"== EXPLAIN (ANALYZE, BUFFERS) of the {key[:-1]} claim's inner SELECT, batch 1: {case['name']} ==")
            print(case["plans"][key])
            print(flush=True)
    for key, plan in chunk_whole.items():
        print(f"== EXPLAIN (ANALYZE, BUFFERS) of the whole {key[:-1]} claim UPDATE, batch 1: {chunk_case['name']} ==")
        print(plan)
        print(flush=True)


def _emit(cases: list[dict[str, Any]], backlog: int, big: int, build_seconds: float, size: str) -> None:
    base = cases[0]
    rows = []
    for case in cases:
        rows.append(
            [
                case["name"],
                case["rows"],
                case["claims"],
                median(case["one"]),
                percentile(case["one"], 95),
                median(case["one"]) / median(base["one"]),
                median(case["fifty"]),
                percentile(case["fifty"], 95),
                median(case["fifty"]) / median(base["fifty"]),
                f"{case['got'][0]}/{case['got'][1]}",
            ]
        )
    full = cases[2]
    ratio = max(median(full["one"]) / median(base["one"]), median(full["fifty"]) / median(base["fifty"]))
    emit(
        table(
            "history: plancheck's claim (claims.claim: lock, chunk UPDATE, run UPDATE), ms per claim, each rolled back",
            ["table", "rows", "claims", "b1 p50", "b1 p95", "b1 ratio", "b50 p50", "b50 p95", "b50 ratio", "claimed"],
            rows,
            [
                f"backlog: {backlog:,} AVAILABLE runs at the tail (rows 4 to 7: {big:,}; rows 5 and 6 claim chunks); "
                f"history built in {build_seconds:.0f} s, plan_check_run {size} with indexes",
                f"goal: history/empty < 1.5 (third row against the first): measured {ratio:.2f} "
                "(worst of batch 1 and batch 50)",
                "the second row has the RUNNING rows without the DONE history: it separates the two",
                f"a stand-in worker lends {LENT_SLOTS:,} slots (worker_slots), so every claim gets its batch",
                "claims = batch-1 claims timed (batch 50: half as many); "
                "claimed = rows the last batch-1 / batch-50 claim returned",
            ],
        )
    )
    emit(
        table(
            "history: the claim's parts alone, batch 1, median ms (each in its own rolled-back transaction)",
            ["table", "advisory lock", "chunk UPDATE", "run UPDATE", "sum of parts", "whole claim"],
            [
                [
                    case["name"],
                    *(median(case["parts"][key]) for key in ("lock", "chunks", "runs")),
                    sum(median(values) for values in case["parts"].values()),
                    median(case["one"]),
                ]
                for case in cases
            ],
            [
                "the same three statements as the whole claim, each timed in a transaction of its own (the run UPDATE "
                "alone claims a run even where the whole claim takes a chunk instead)"
            ],
        )
    )
    emit(
        table(
            "history: what the claims' inner SELECTs read (EXPLAIN ANALYZE after ANALYZE, batch 1)",
            [
                "table",
                "run claim: plan_check_run",
                "run claim: plan_check_chunk",
                "chunk claim: plan_check_chunk",
                "chunk claim: plan_check_run",
            ],
            [
                [case["name"], *(scans(case["plans"][claim], read, case["empty"][read]) for claim, read in _SCANNED)]
                for case in cases
            ],
            [
                "the claimable rows come from plan_check_run_claimable_idx / plan_check_chunk_claimable_idx (partial: "
                "AVAILABLE only, in id order); the other scans count the executing rows against the free slots "
                "(occupying_idx: RUNNING runs not fanned out; chunk lease_idx: RUNNING chunks) or check a chunk's run "
                "(pkey)",
                f"sequential scans of a non-empty plan_check_run or plan_check_chunk in these {2 * len(cases)} plans: "
                f"{_seq_scans(cases)}",
            ],
        )
    )


def _seq_scans(cases: list[dict[str, Any]]) -> str:
    found = [
        f"{case['name']} ({key} claim)"
        for case in cases
        for key, plan in case["plans"].items()
        if any(f"Seq Scan on {name} " in plan for name, empty in case["empty"].items() if not empty)
    ]
    return "; ".join(found) or "none"
