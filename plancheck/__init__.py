"""plancheck: plan checks for PostgreSQL change plans on a Celery cluster, PostgreSQL deciding every status.

Importing the package loads nothing else: `plancheck.app` (the Celery application, what
`celery -A plancheck` finds) is imported on first use, so the CLI and the SQL review start fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from plancheck.scheduler.app import app

        return app
    raise AttributeError(f"module 'plancheck' has no attribute {name!r}")
