"""Test hook (test suite only): the plancheck Celery app, with every `plancheck.run` message published twice.

Start a worker with `celery -A tests.chaos.duplicating_app worker`: the claim task runs in workers and
publishes the run messages, so each claim's message reaches the broker twice, with the same task id,
arguments and token. The second copy carries a header so it is not duplicated again.
"""

from __future__ import annotations

from typing import Any

from celery.signals import after_task_publish

from plancheck import app

__all__ = ["app"]

DUPLICATE_HEADER = "plancheck_chaos_duplicate"
RUN_TASK = "plancheck.run"


@after_task_publish.connect
def publish_again(sender: str | None = None, body: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    headers = headers or {}
    if sender != RUN_TASK or headers.get(DUPLICATE_HEADER):
        return
    args, kwargs, _embed = body  # task protocol 2: (args, kwargs, embed)
    app.send_task(RUN_TASK, args=args, kwargs=kwargs, task_id=headers.get("id"), headers={DUPLICATE_HEADER: "1"})
