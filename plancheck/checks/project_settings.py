"""A project's settings: the schema they must satisfy when a project is created.

Settings are user input stored as JSON and read later by workers and approval finding; validating them
here, once, means a bad value is a one-line error at `project create`, not a traceback later. Rule
names, levels and options are checked by the review's own configuration (`ReviewConfig`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plancheck.checks.advise import ReviewConfig
from plancheck.checks.specs import MAX_TARGETS

MAX_AFFECTED_ROWS = 10**15
_WORDS = (
    ("Input should be a valid integer", "must be a whole number"),
    ("Input should be a valid dictionary", "must be a JSON object"),
    ("Input should be", "must be"),
)


class _SqlReview(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ProjectSettings(BaseModel):
    """`plancheck project create --settings FILE.json` (see README "Project settings")."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sql_review: _SqlReview | None = None
    ci_sampling_size: int | None = Field(None, ge=0, le=MAX_TARGETS)
    risk_affected_rows: int | None = Field(None, ge=0, le=MAX_AFFECTED_ROWS)


def validate_project_settings(settings: Any) -> dict[str, Any]:
    """`settings` if it satisfies the schema and the review accepts its rules; else ValueError, one line."""
    try:
        ProjectSettings.model_validate(settings)
    except ValidationError as error:
        raise ValueError(_message(error)) from None
    ReviewConfig.from_project_settings(settings)
    return settings


def _message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    if first["type"] == "extra_forbidden":
        known = ", ".join(ProjectSettings.model_fields) if len(first["loc"]) == 1 else "rules"
        return f"unknown setting {where!r} (expected {known})"
    if first["type"] == "model_type":
        return f"{where} must be a JSON object"
    reason = first["msg"]
    for pydantic_words, ours in _WORDS:
        reason = reason.replace(pydantic_words, ours)
    return f"{where} {reason}, got {first['input']!r}"[:300]
