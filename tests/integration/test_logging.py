"""One log line per state change, with run, plan, attempt and worker; JSON lines on request."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from plancheck.api import Plancheck
from tests.integration.helpers import make_target, register_target
from tests.processes import cluster, wait_for


def _events(log: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" in line]


def test_worker_and_beat_write_state_changes_as_json_lines(
    api: Plancheck, create_database: Callable[[str], str], plancheck_env: dict[str, str], tmp_path: Path
) -> None:
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
    assert {"claimed", "started", "finished"} <= set(by_event)
    started = by_event["started"]
    assert started["run_id"] and started["attempt"] == 1 and str(started["worker"]).startswith("w1@")
    assert by_event["finished"]["status"] == "DONE"
    assert not re.search(r"^\[\d{4}-\d\d-\d\d ", log_text, re.MULTILINE), "a log line in text format"
