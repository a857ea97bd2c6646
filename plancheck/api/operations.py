"""The deployment itself: the metadata schema, health of its services, metrics and the review rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plancheck.api.base import ApiBase
from plancheck.store import db

if TYPE_CHECKING:
    from plancheck.ops.status import Health


class OperationsApi(ApiBase):
    def upgrade_database(self) -> str | None:
        db.upgrade(self.settings.database_url)
        return db.current_revision(self.settings.database_url)

    def health(self, timeout: float = 1.0) -> dict[str, bool]:
        """Whether the metadata database (at the schema head) and the broker answer within `timeout`."""
        from plancheck.ops.status import check_broker, check_database

        database, broker = check_database(self.settings, timeout), check_broker(self.settings, timeout)
        return {"database": database.ok, "broker": broker.ok}

    def status(self, timeout: float = 1.0) -> Health:
        """Every health probe — database, broker, workers, beat, backlog — each bounded by `timeout`."""
        from plancheck.ops.status import check_all

        return check_all(self.settings, timeout)

    def serve_metrics(self, host: str, port: int) -> None:
        """Serve the Prometheus metrics on host:port until SIGINT or SIGTERM."""
        from plancheck.ops.metrics import serve

        serve(self.settings.database_url, host, port)

    def metrics(self) -> bytes:
        """The Prometheus exposition of plancheck's metrics, computed from PostgreSQL now."""
        from prometheus_client import generate_latest

        from plancheck.ops.metrics import registry_for

        return bytes(generate_latest(registry_for(self.engine)))


def rule_fixes() -> dict[str, str]:
    """How to fix what each SQL review rule catches, by rule name (the results page's guidance)."""
    from plancheck.checks.rules import ALL_RULES

    return {rule.name: " ".join(rule.fix.split()) for rule in ALL_RULES}
