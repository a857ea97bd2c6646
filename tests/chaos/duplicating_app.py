"""Test hook (test suite only): the plancheck Celery app, with every run and chunk message published twice.

Those messages come from three places: beats (their claims), workers (the work a finishing run or
chunk claims) and the process that creates plans (dispatch on create). Start beats and workers with
`celery -A tests.chaos.duplicating_app beat|worker` to duplicate the first two, and wrap plan creation
in `publishing_twice(broker_url)` for the last. Each message reaches the broker twice, with the same
task id, arguments and token; the second copy carries a header so it is not duplicated again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import after_task_publish, beat_init, worker_process_init

from plancheck import app
from plancheck.scheduler.app import broker_connection

__all__ = ["app", "publishing_twice"]

DUPLICATE_HEADER = "plancheck_chaos_duplicate"
WORK_TASKS = frozenset({"plancheck.run", "plancheck.run_chunk"})


def _publish_again(broker_url: str | None) -> Callable[..., None]:
    """A publish hook sending every run message again, to `broker_url` or to the app's own broker."""

    def hook(
        sender: str | None = None,
        body: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        **_: Any,
    ) -> None:
        headers = headers or {}
        if sender not in WORK_TASKS or headers.get(DUPLICATE_HEADER):
            return
        args, kwargs, _embed = body  # task protocol 2: (args, kwargs, embed)
        again = {
            "args": args,
            "kwargs": kwargs,
            "task_id": headers.get("id"),
            "headers": {DUPLICATE_HEADER: "1"},
            "queue": routing_key,
        }
        if broker_url is None:
            app.send_task(sender, **again)
        else:
            with broker_connection(broker_url) as connection:
                app.send_task(sender, connection=connection, **again)

    return hook


@worker_process_init.connect
@beat_init.connect
def _duplicate_in_this_process(**_: Any) -> None:
    after_task_publish.connect(_publish_again(None), weak=False)


@contextmanager
def publishing_twice(broker_url: str) -> Iterator[None]:
    """Within the block, this process publishes every run message twice (to `broker_url`)."""
    hook = _publish_again(broker_url)
    after_task_publish.connect(hook, weak=False)
    try:
        yield
    finally:
        after_task_publish.disconnect(hook)
