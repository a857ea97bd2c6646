"""What a database group expression sees of a database: a module of its own, so code that only
describes databases (plan specs, target derivation) loads no CEL until an expression is evaluated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatabaseResource:
    """What a group expression sees of a database."""

    instance_id: str
    database_name: str
    environment_id: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.instance_id}/{self.database_name}"
