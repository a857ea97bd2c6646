"""The relay debounce: one relay task covers every run a process finishes within its delay."""

from __future__ import annotations

import time

from plancheck.scheduler.tasks import _Debounce


def test_the_first_call_schedules_and_the_rest_of_the_window_is_covered() -> None:
    debounce = _Debounce(0.2)
    assert debounce.first() is True
    assert [debounce.first() for _ in range(5)] == [False] * 5
    time.sleep(0.25)
    assert debounce.first() is True
    assert debounce.first() is False
