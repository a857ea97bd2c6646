"""A target database of a plan: who it is, how to reach it (the URL never leaves this object), and the
error for a target that cannot be checked."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """One database a plan's SQL is checked against.

    `url` is a libpq connection string carrying the resolved credentials: the key=value form that
    `resolve_url` builds from keyword parameters, or a postgresql:// URL. It is excluded from repr so
    it never lands in a log line or a traceback, and results name the target only by `name`
    ("instance/database").
    """

    instance_key: str
    database_name: str
    environment: str
    url: str = field(repr=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.instance_key}/{self.database_name}"


class TargetError(Exception):
    """The target could not be checked; `title` names the kind of trouble, the message is redacted."""

    def __init__(self, message: str, title: str = "Target error") -> None:
        super().__init__(message)
        self.title = title
