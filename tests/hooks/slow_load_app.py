"""Test hook (test suite only): the plancheck Celery app whose loading of a run's work takes seconds,
as an expensive group expression would, and says so with a marker file while it lasts.

PLANCHECK_TEST_LOADING_MARKER names the file; it exists exactly while the work is being loaded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from plancheck import app
from plancheck.scheduler import runner

__all__ = ["LOAD_SECONDS", "app"]

LOAD_SECONDS = 4.0
_real_load = runner.load_work


def _slow_load(*args: Any, **kwargs: Any) -> Any:
    marker = Path(os.environ["PLANCHECK_TEST_LOADING_MARKER"])
    marker.touch()
    try:
        time.sleep(LOAD_SECONDS)
        return _real_load(*args, **kwargs)
    finally:
        marker.unlink()


runner.load_work = _slow_load  # type: ignore[assignment]
