"""One log line per state change, with run, plan, attempt and worker; JSON lines on request."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from plancheck.api import Plancheck
from tests.integration.helpers import make_target, register_target
from tests.processes import cluster, wait_for


def _events(log: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" in line]


def test_worker_and_beat_write_state_changes_as_json_lines(
    api: Plancheck,
    create_database: Callable[[str], str],
    plancheck_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plancheck.runs")
    target = register_target(api, *make_target(create_database))
    with cluster({**plancheck_env, "PLANCHECK_LOG_FORMAT": "json"}, tmp_path) as running:
        worker = running.worker("w1")
        running.beat("b1")
        plan_id = api.create_plan("shop", "SELECT 1;", targets=[target.target])
        wait_for(lambda: api.checks(plan_id).status == "DONE", 60, message="run DONE")
        wait_for(lambda: any(e["event"] == "finished" for e in _events(worker.log())), 10, message="finished line")
        log_text = worker.log()
    events = _events(log_text)
    api.cancel([api.create_plan("shop", "SELECT 1;", targets=[target.target])])
    by_event = {event["event"]: event for event in events if event.get("plan_id") == plan_id}
    assert {"started", "finished"} <= set(by_event)
    # The claim is logged by whoever made it: the creating process (dispatch on create) or, had a beat
    # tick come first, the worker that ran the claim task. Either way exactly once.
    in_api = [r.plancheck for r in caplog.records if getattr(r, "plancheck", {}).get("plan_id") == plan_id]
    in_worker = [event for event in events if event.get("plan_id") == plan_id and event["event"] == "claimed"]
    assert [(c["event"], c["attempt"]) for c in in_api + in_worker] == [("claimed", 1)]
    started = by_event["started"]
    assert started["run_id"] and started["attempt"] == 1 and str(started["worker"]).startswith("w1@")
    assert by_event["finished"]["status"] == "DONE"
    assert not re.search(r"^\[\d{4}-\d\d-\d\d ", log_text, re.MULTILINE), "a log line in text format"
