"""One log line per run state change, as text or (PLANCHECK_LOG_FORMAT=json) as JSON lines."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("plancheck.runs")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        entry.update(getattr(record, "plancheck", {}))
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def state_change(event: str, run_id: int | None, plan_id: int | None = None, **fields: Any) -> None:
    """Log `event` (claimed, started, heartbeat lost, finished, reaped, cancelled, ...) for a run or chunk."""
    data = {"event": event, "run_id": run_id, "plan_id": plan_id, **fields}
    details = " ".join(f"{key}={value}" for key, value in data.items() if value is not None and key != "event")
    log.info("%s %s", event, details, extra={"plancheck": data})
