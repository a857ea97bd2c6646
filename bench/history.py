"""3. History: claim latency on an empty history against 1,000,000 finished runs.

The claim is plancheck's own (`plancheck.store.runs.claim`, the `UPDATE ... WHERE id IN (SELECT ...
FOR UPDATE SKIP LOCKED)`), run on a metadata database migrated to Alembic head. Each claim runs in
its own transaction, is timed client-side around `runs.claim` (statement + round trip), and is
rolled back, so every claim sees the same backlog: the oldest rows of the table are finished or
running, the backlog sits at the tail.

* empty: only the backlog (1,000 AVAILABLE runs);
* history: 1,000 RUNNING runs (started, lease in the future) at the head of the table, then
  1,000,000 DONE runs with a small result each, all inserted with generate_series, then the same
  1,000 AVAILABLE runs; VACUUM ANALYZE afterwards (what autovacuum would do to a table this size);
* history + big backlog: the same plus 100,000 more AVAILABLE runs, ANALYZEd again: the case where
  statistics see many AVAILABLE rows and a planner might leave the partial index;
* empty history + big backlog: a burst of 100,000 plans on a young table, the backlog being most
  of the table (measured in the first database after the empty-history case, listed last).

Before the timed claims, the EXPLAIN (ANALYZE, BUFFERS) of the claim's inner SELECT is printed
(in a rolled-back transaction).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import Engine, text

from bench.common import Servers, emit, median, percentile, progress, table

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


def inner_select(claim_sql: str) -> str:
    """The claim's inner `SELECT ... FOR UPDATE SKIP LOCKED`, cut out of plancheck's statement."""
    start = re.search(r"\bIN\s*\(|ANY\(ARRAY\(", claim_sql)
    if start is None:
        raise RuntimeError("cannot find the inner SELECT of the claim statement")
    depth, i = 1, start.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(claim_sql[i], 0)
        i += 1
    return claim_sql[start.end(): i - 1].strip()


def explain(engine: Engine, batch: int, lease: float, whole: bool = False) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's inner SELECT (or of the whole UPDATE), rolled back."""
    from plancheck.store import runs

    statement = str(runs._CLAIM.text)
    sql = statement.strip() if whole else inner_select(statement)
    with engine.connect() as conn:
        with conn.begin() as trans:
            rows = conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS, COSTS) " + sql), {"batch": batch, "cap": batch, "lease": lease}
            ).all()
            trans.rollback()
    return "\n".join(row[0] for row in rows)


def candidate_claim(claim_sql: str) -> str:
    """A bench-only variant of the claim (NOT plancheck's): `id = ANY(ARRAY(inner SELECT))`.

    The array is computed once as an InitPlan, so the UPDATE finds its rows through the primary key
    whatever row count the planner guesses for the inner SELECT.
    """
    if "ANY(ARRAY(" in claim_sql:  # plancheck's claim has taken this form since commit ed6df59
        return claim_sql
    select = inner_select(claim_sql)
    start = re.search(r"\bid\s+IN\s*\(", claim_sql)
    if start is None:
        raise RuntimeError("cannot find 'id IN (' in the claim statement")
    end = claim_sql.index(select, start.end()) + len(select)
    close = claim_sql.index(")", end)
    return claim_sql[: start.start()] + "id = ANY(ARRAY(" + select + "))" + claim_sql[close + 1:]


def time_claims(
    engine: Engine, batch: int, count: int, lease: float, sql: str | None = None
) -> tuple[list[float], int]:
    """Milliseconds of `runs.claim` per call (each rolled back), and the rows the last claim returned.

    With `sql`, that statement is timed instead (the candidate variant), the same way.
    """
    from plancheck.store import runs

    times: list[float] = []
    claimed = 0
    with engine.connect() as conn:
        warm = 10 if count >= 100 else 3
        for i in range(count + warm):
            trans = conn.begin()
            t0 = time.perf_counter()
            if sql is None:
                rows = runs.claim(conn, batch, lease)
            else:
                rows = conn.execute(text(sql), {"batch": batch, "cap": batch, "lease": lease}).all()
            elapsed = time.perf_counter() - t0
            trans.rollback()
            if i >= warm:  # the first few warm the connection and the caches
                times.append(elapsed * 1000)
            claimed = len(rows)
    return times, claimed


_UNSTARTED_INDEX = (
    "CREATE INDEX pcb_unstarted_idx ON plan_check_run (id) WHERE status = 'RUNNING' AND started_at IS NULL"
)


def _case(engine: Engine, name: str, rows: int, claims: int, lease: float) -> dict[str, Any]:
    """Time plancheck's claim, then the bench-only candidates, on the table as it is."""
    from plancheck.store import runs

    progress(f"history: timing claims, {name}")
    plan = explain(engine, 1, lease)
    whole = explain(engine, 1, lease, whole=True)
    one, got_one = time_claims(engine, 1, claims, lease)
    fifty, got_fifty = time_claims(engine, 50, claims // 2, lease)
    candidate = candidate_claim(str(runs._CLAIM.text))
    alt_one, _ = time_claims(engine, 1, claims, lease, candidate)
    # Candidate 2 (bench-only, in this scratch database): an index holding only claimed-but-unstarted
    # runs, for the claim's in-flight count; created, measured, dropped.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(_UNSTARTED_INDEX))
        conn.execute(text("ANALYZE plan_check_run"))
    try:
        idx_one, _ = time_claims(engine, 1, claims, lease)
        both_one, _ = time_claims(engine, 1, claims, lease, candidate)
        both_fifty, _ = time_claims(engine, 50, claims // 2, lease, candidate)
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("DROP INDEX pcb_unstarted_idx"))
            conn.execute(text("ANALYZE plan_check_run"))
    return {"name": name, "rows": rows, "plan": plan, "whole": whole, "one": one, "fifty": fifty,
            "got": (got_one, got_fifty), "alt_one": alt_one, "idx_one": idx_one, "both_one": both_one,
            "both_fifty": both_fifty, "claims": claims}


def run(servers: Servers, quick: bool) -> None:
    from plancheck.store.db import engine_for, upgrade

    done = 200_000 if quick else 1_000_000
    running_rows = 1_000
    backlog = 1_000
    claims = 200 if quick else 500
    lease = 15.0
    big = 100_000
    cases = []

    with servers.database("hist_empty") as url:
        upgrade(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
            conn.execute(text("ANALYZE plan_check_run"))
        cases.append(_case(engine, "empty history", backlog, claims, lease))
        with engine.begin() as conn:  # a burst on a young table: the backlog is most of the table
            conn.execute(_BACKLOG, {"offset": 200_000_000, "count": big - backlog})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE plan_check_run"))
        burst = _case(engine, f"empty history, {big:,} AVAILABLE", big, 20, lease)
        engine.dispose()

    with servers.database("hist_running") as url:  # isolates the RUNNING rows from the DONE history
        upgrade(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(_HISTORY, {"running": running_rows, "total": running_rows})
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE plan_check_run"))
        cases.append(_case(engine, f"no history, {running_rows:,} RUNNING", running_rows + backlog, claims, lease))
        engine.dispose()

    with servers.database("hist_full") as url:
        upgrade(url)
        engine = engine_for(url)
        progress(f"history: inserting {done:,} DONE + {running_rows:,} RUNNING runs")
        t0 = time.monotonic()
        with engine.begin() as conn:
            conn.execute(_HISTORY, {"running": running_rows, "total": running_rows + done})
            conn.execute(_BACKLOG, {"offset": 100_000_000, "count": backlog})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE plan_check_run"))
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('plan_check_run'))")).scalar_one()
        build_seconds = time.monotonic() - t0
        total = running_rows + done + backlog
        cases.append(_case(engine, f"{done:,} DONE + {running_rows:,} RUNNING", total, claims, lease))

        with engine.begin() as conn:
            conn.execute(_BACKLOG, {"offset": 200_000_000, "count": big - backlog})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE plan_check_run"))
        cases.append(_case(engine, f"same + {big:,} AVAILABLE", total + big - backlog, 20, lease))
        engine.dispose()
    cases.append(burst)

    base = cases[0]
    rows = []
    for case in cases:
        rows.append([
            case["name"], case["rows"], case["claims"],
            median(case["one"]), percentile(case["one"], 95), median(case["one"]) / median(base["one"]),
            median(case["fifty"]), percentile(case["fifty"], 95), median(case["fifty"]) / median(base["fifty"]),
            f"{case['got'][0]}/{case['got'][1]}",
        ])
    full = cases[2]
    ratio = max(median(full["one"]) / median(base["one"]), median(full["fifty"]) / median(base["fifty"]))
    emit(table(
        "history: plancheck's claim (runs.claim), ms per claim, each claim rolled back",
        ["table", "rows", "claims", "b1 p50", "b1 p95", "b1 ratio", "b50 p50", "b50 p95", "b50 ratio", "claimed"],
        rows,
        [f"backlog: {backlog:,} AVAILABLE runs at the tail (rows 4 and 5: {big:,}); "
         f"history built in {build_seconds:.0f} s, plan_check_run {size} with indexes",
         f"goal: history/empty < 1.5 (third row against the first): measured {ratio:.2f} "
         "(worst of batch 1 and batch 50)",
         "the second row has the RUNNING rows without the DONE history: it separates the two",
         "claims = batch-1 claims timed (batch 50: half as many); "
         "claimed = rows the last batch-1 / batch-50 claim returned"],
    ))
    rows = []
    for case in cases:
        rows.append([case["name"], median(case["one"]), median(case["alt_one"]), median(case["idx_one"]),
                     median(case["both_one"]), median(case["fifty"]), median(case["both_fifty"])])
    emit(table(
        "history: plancheck's claim against bench-only candidates, median ms",
        ["table", "b1 plancheck", "b1 A", "b1 B", "b1 A+B", "b50 plancheck", "b50 A+B"],
        rows,
        ["A = the same statement with 'WHERE id = ANY(ARRAY(<inner SELECT>))' "
         "instead of 'WHERE id IN (<inner SELECT>)'",
         "B = plancheck's statement plus an index ON plan_check_run (id) "
         "WHERE status = 'RUNNING' AND started_at IS NULL",
         "(both defined and run only in bench/history.py, on its scratch databases; plancheck is unchanged)"],
    ))
    for case in cases:
        print(f"== EXPLAIN (ANALYZE, BUFFERS) of the claim's inner SELECT, batch 1: {case['name']} ==")
        print(case["plan"])
        print(flush=True)
    for case in cases:
        print(f"== EXPLAIN (ANALYZE, BUFFERS) of the whole claim UPDATE, batch 1: {case['name']} ==")
        print(case["whole"])
        print(flush=True)
