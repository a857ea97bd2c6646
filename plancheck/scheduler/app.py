"""The Celery application; `celery -A plancheck` finds it as `plancheck.app`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger
from kombu import Connection

from plancheck.core.logs import JsonFormatter
from plancheck.core.settings import load_settings
from plancheck.scheduler.transport import transport_for

app = Celery("plancheck")
app.config_from_object("celeryconfig")
app.steps["worker"].add("plancheck.scheduler.slots:WorkerSlots")


def broker_connection(url: str) -> Connection:
    """A connection to the broker at `url` with plancheck's transport for it, whatever broker this
    process's own configuration names (dev mode and tests address other brokers than their env's)."""
    return app.connection_for_write(url, transport=transport_for(url))


@after_setup_logger.connect
def _json_log_lines(logger: logging.Logger, **kwargs: Any) -> None:
    """With PLANCHECK_LOG_FORMAT=json, workers and beats write every log line as a JSON object."""
    if load_settings().log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
