"""Prometheus metrics computed from PostgreSQL on every scrape.

Workers keep no counters of their own: PostgreSQL holds every status and every attempt, so one
query per scrape is right whatever the number of workers and beats, and survives their restarts.
An unreachable database is reported as `plancheck_database_up 0`, never as a failed scrape.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from plancheck.core.conninfo import password_forms
from plancheck.core.redact import error_line
from plancheck.store import beats
from plancheck.store import metrics as queries
from plancheck.store.db import probe_engine

log = logging.getLogger(__name__)


def _histogram(name: str, documentation: str, histogram: queries.Histogram) -> HistogramMetricFamily:
    buckets = [(_le(bound), float(count)) for bound, count in histogram.buckets]
    buckets.append(("+Inf", float(histogram.count)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.sum)


def _le(bound: float) -> str:
    return repr(float(bound))


class PlancheckCollector(Collector):
    """Reads the metadata database on each `collect()` (each scrape) in one consistent snapshot."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = self._read()
        except SQLAlchemyError as exc:
            secrets = password_forms(self.engine.url.password)
            log.warning("metrics: reading the database failed: %s", error_line(exc, *secrets))
            metrics = []
        yield GaugeMetricFamily(
            "plancheck_database_up", "1 if the metadata database answered this scrape.", value=1 if metrics else 0
        )
        yield from metrics

    def _read(self) -> list[Metric]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                by_status = queries.runs_by_status(conn)
                backlog = queries.backlog(conn)
                totals = queries.attempt_totals(conn)
                pending = queries.outbox_pending(conn)
                seen = _beats_seen(conn)
        runs = GaugeMetricFamily("plancheck_runs", "Plan check runs by status.", labels=["status"])
        for status, count in by_status.items():
            runs.add_metric([status], count)
        metrics: list[Metric] = [
            runs,
            GaugeMetricFamily(
                "plancheck_oldest_available_age_seconds",
                "Seconds the longest-waiting AVAILABLE run has waited to be claimed (0 when none).",
                value=backlog.oldest_age_seconds or 0.0,
            ),
            CounterMetricFamily(
                "plancheck_runs_finished",
                "Execution attempts that ended their run DONE, FAILED or CANCELED.",
                value=totals.finished,
            ),
            CounterMetricFamily(
                "plancheck_runs_failed", "Execution attempts that ended their run FAILED.", value=totals.failed
            ),
            CounterMetricFamily(
                "plancheck_attempts_reaped",
                "Execution attempts whose lease expired (worker died or stalled): outcome LOST.",
                value=totals.reaped,
            ),
            _histogram(
                "plancheck_claim_to_start_seconds",
                "Seconds from a run's claim to the start of its execution.",
                totals.claim_to_start,
            ),
            _histogram(
                "plancheck_start_to_finish_seconds",
                "Seconds from the start of an execution to the end of its run (DONE, FAILED or CANCELED).",
                totals.start_to_finish,
            ),
            GaugeMetricFamily("plancheck_outbox_pending", "Follow-ups written but not yet delivered.", value=pending),
        ]
        if seen:
            metrics.append(
                GaugeMetricFamily(
                    "plancheck_beat_last_seen_age_seconds",
                    "Seconds since any celery beat last recorded its heartbeat.",
                    value=seen[0].age_seconds,
                )
            )
        return metrics


def _beats_seen(conn: Connection) -> list[beats.BeatSeen]:
    """Beat heartbeats, or none on a database not yet migrated to the revision that has them."""
    try:
        with conn.begin_nested():
            return beats.seen(conn)
    except ProgrammingError:
        return []


def registry_for(engine: Engine) -> CollectorRegistry:
    """A registry holding only plancheck's collector; registering it runs no query."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlancheckCollector(engine))
    return registry


def serve(database_url: str, host: str, port: int) -> None:
    """Serve /metrics on host:port until SIGINT or SIGTERM."""
    # Give up before Prometheus' default 10 s scrape timeout: a slow database then shows as
    # plancheck_database_up 0 rather than as a timed-out scrape.
    engine = probe_engine(database_url, timeout=8)
    server, thread = start_http_server(port, addr=host, registry=registry_for(engine))
    # As PID 1 in a container SIGTERM would otherwise be ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
