"""The Python API: the same verbs as the CLI and the HTTP API, which only call this package.

`Plancheck` gathers one part per resource it serves: the catalog (projects, instances, databases,
groups — `catalog`), plans and their checks (`plans`), follow-ups (issues, rollouts — `followups`),
access (tokens, page sessions — `access`) and operations (schema, health, metrics — `operations`).
`remote.HttpClient` offers the plan verbs over HTTP; `present` is how a checks document reads.

Names are imported on first use, so `plancheck.api.present` (needed by every CLI command) does not
load the store, SQLAlchemy or Celery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plancheck.api.access import CreatedToken
    from plancheck.api.catalog import SyncResult
    from plancheck.api.inputs import decode_sql
    from plancheck.api.operations import rule_fixes
    from plancheck.api.plancheck import Plancheck
    from plancheck.api.plans import MAX_PAGE, Checks

_HOMES = {
    "Plancheck": "plancheck.api.plancheck",
    "Checks": "plancheck.api.plans",
    "MAX_PAGE": "plancheck.api.plans",
    "CreatedToken": "plancheck.api.access",
    "SyncResult": "plancheck.api.catalog",
    "decode_sql": "plancheck.api.inputs",
    "rule_fixes": "plancheck.api.operations",
}
__all__ = ["MAX_PAGE", "Checks", "CreatedToken", "Plancheck", "SyncResult", "decode_sql", "rule_fixes"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'plancheck.api' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
