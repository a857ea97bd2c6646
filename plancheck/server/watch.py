"""Long-polls without a thread or a database connection per waiter.

Each waiter is an asyncio event. One background task reads the status of every waited-on plan in
a single statement per tick (on a pool thread, for that moment only) and wakes the waiters whose
run has finished. 200 clients waiting cost one small query per tick, not 200 sleeping threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

Progress = Callable[[Sequence[int]], Mapping[int, Mapping[str, Any]]]


class FinishWatcher:
    def __init__(self, progress: Progress, interval: float = 0.5) -> None:
        self._progress = progress
        self._interval = interval
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    async def wait(self, plan_id: int, timeout: float) -> None:
        """Return when the plan's run is finished (or it has none), or after `timeout` seconds."""
        event = asyncio.Event()
        self._waiters.setdefault(plan_id, set()).add(event)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            events = self._waiters.get(plan_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[plan_id]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._interval)
            plan_ids = list(self._waiters)
            if not plan_ids:
                return
            try:
                progress = await run_in_threadpool(self._progress, plan_ids)
            except Exception as exc:
                log.warning("long-poll status read failed (%s); retrying", type(exc).__name__)
                continue
            for plan_id in plan_ids:
                state = progress.get(plan_id)
                if state is None or state.get("finished"):
                    for event in self._waiters.get(plan_id, ()):
                        event.set()
