"""`plancheck metrics serve`: Prometheus series computed from PostgreSQL, scraped over HTTP."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine

from plancheck.devtools.embedded import free_port
from plancheck.ops.metrics import registry_for
from plancheck.store import metrics as queries
from plancheck.store import runs
from plancheck.store.db import probe_engine
from plancheck.store.metrics import HISTOGRAM_BOUNDS
from tests.integration.helpers import claim_directly
from tests.processes import REPO_ROOT, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _finish(engine: Engine, status: str) -> None:
    with engine.begin() as conn:
        (claimed,) = claim_directly(conn, 1, 60)
        assert runs.start(conn, claimed.id, claimed.token, "w1", 60)
        assert runs.finish(conn, claimed.id, claimed.token, status)


def make_known_runs(engine: Engine) -> None:
    """3 DONE, 1 FAILED, 1 RUNNING, 2 AVAILABLE, and one attempt reaped (LOST)."""
    with engine.begin() as conn:
        for plan_id in range(1, 8):
            runs.create(conn, plan_id, 1)
    for status in ("DONE", "DONE", "DONE", "FAILED"):
        _finish(engine, status)
    with engine.begin() as conn:  # started with a lease that has already expired
        (claimed,) = claim_directly(conn, 1, 60)
        assert runs.start(conn, claimed.id, claimed.token, "w2", 0)
    with engine.begin() as conn:
        assert [item.status for item in runs.reap(conn, max_attempts=3, batch=10)] == ["AVAILABLE"]
    with engine.begin() as conn:  # the reaped run, oldest AVAILABLE, is claimed again and left running
        (claimed,) = claim_directly(conn, 1, 60)
        assert runs.start(conn, claimed.id, claimed.token, "w1", 60)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


@pytest.fixture
def engine(metadata_url: str) -> Iterator[Engine]:
    """The test's metadata database (the store layer alone: no API, no checks)."""
    engine = create_engine(metadata_url)
    yield engine
    engine.dispose()


@pytest.fixture
def metrics_port(plancheck_env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """A `plancheck metrics serve` process on a free port."""
    port = free_port()
    log = tmp_path / "metrics.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "plancheck.cli.ops", "metrics", "serve", "--port", str(port)],
        cwd=REPO_ROOT,
        env=plancheck_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def answering() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            scrape(port)
        except OSError:
            return False
        return True

    try:
        wait_for(answering, timeout=20, message="metrics server")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _histogram(samples: Samples, name: str) -> tuple[list[float], float, float]:
    buckets = [samples[(f"{name}_bucket", (("le", str(float(bound))),))] for bound in HISTOGRAM_BOUNDS]
    buckets.append(samples[(f"{name}_bucket", (("le", "+Inf"),))])
    return buckets, samples[(f"{name}_count", ())], samples[(f"{name}_sum", ())]


def test_series_from_postgres(engine: Engine, metrics_port: int) -> None:
    make_known_runs(engine)
    samples = parse(scrape(metrics_port))

    assert samples[("plancheck_database_up", ())] == 1
    by_status = {labels[0][1]: value for (name, labels), value in samples.items() if name == "plancheck_runs"}
    assert by_status == {"AVAILABLE": 2, "RUNNING": 1, "DONE": 3, "FAILED": 1, "CANCELED": 0}
    assert 0 < samples[("plancheck_oldest_available_age_seconds", ())] < 60
    assert samples[("plancheck_runs_finished_total", ())] == 4
    assert samples[("plancheck_runs_failed_total", ())] == 1
    assert samples[("plancheck_attempts_reaped_total", ())] == 1
    assert samples[("plancheck_outbox_pending", ())] == 6  # approval finding + rollout per DONE

    # Six executions started (claim-to-start); four ended their run (start-to-finish).
    for name, expected in (("plancheck_claim_to_start_seconds", 6), ("plancheck_start_to_finish_seconds", 4)):
        buckets, count, total = _histogram(samples, name)
        assert buckets == sorted(buckets), name
        assert buckets[-1] == count == expected, name
        assert buckets[HISTOGRAM_BOUNDS.index(60.0)] == expected, name  # everything here took < 1 min
        assert 0 <= total < 60 * expected, name


def test_values_follow_the_database(engine: Engine, metrics_port: int) -> None:
    """Nothing is cached: each scrape reads PostgreSQL again."""
    before = parse(scrape(metrics_port))
    assert before[("plancheck_runs", (("status", "AVAILABLE"),))] == 0
    assert before[("plancheck_oldest_available_age_seconds", ())] == 0
    assert before[("plancheck_claim_to_start_seconds_count", ())] == 0
    make_known_runs(engine)
    with engine.begin() as conn:
        runs.cancel(conn, [6, 7])
    after = parse(scrape(metrics_port))
    assert after[("plancheck_runs", (("status", "CANCELED"),))] == 2
    assert after[("plancheck_runs", (("status", "AVAILABLE"),))] == 0


def test_unreachable_database_is_a_series_not_a_failed_scrape() -> None:
    url = f"postgresql+psycopg://nobody:Needle-Pw-9@127.0.0.1:{free_port()}/nothing"
    text = generate_latest(registry_for(probe_engine(url))).decode()
    assert parse(text) == {("plancheck_database_up", ()): 0.0}
    assert "Needle-Pw-9" not in text


def test_histogram_buckets_are_le(engine: Engine) -> None:
    """A duration exactly on a bound counts in that bound's bucket (Prometheus `le`)."""
    make_known_runs(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE plan_check_attempt SET started_at = claimed_at + interval '1 second'")
        totals = queries.attempt_totals(conn)
    buckets = dict(totals.claim_to_start.buckets)
    assert (buckets[0.5], buckets[1.0], buckets[2.5]) == (0, 6, 6)
    assert totals.claim_to_start.sum == pytest.approx(6.0)
