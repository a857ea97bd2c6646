"""What every part of the Python API shares: its settings, the metadata engine, and dispatching claims."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from plancheck.core.settings import Settings, load_settings
from plancheck.store import db

if TYPE_CHECKING:
    import kombu

log = logging.getLogger(__name__)


class ApiBase:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._local = threading.local()  # a kombu connection is not thread-safe: one per calling thread

    @property
    def engine(self) -> Engine:
        return db.engine_for(self.settings.database_url)

    def _dispatch_claim(self) -> None:
        """Claim now and send the run messages, rather than wait for a beat tick.

        The broker connection is opened first and kept for the next call: when the broker is down
        nothing is claimed, and beat claims the run once it is back.
        """
        from plancheck.scheduler.tasks import claim_now

        try:
            claim_now(self.settings, self._broker_connection())
        except Exception as exc:
            self._drop_broker_connection()
            log.warning("could not dispatch a claim (%s); beat will claim the run", type(exc).__name__)

    def _broker_connection(self) -> kombu.Connection:
        connection: kombu.Connection | None = getattr(self._local, "broker", None)
        if connection is None:
            from plancheck.scheduler.app import broker_connection

            connection = broker_connection(self.settings.broker_url)
            self._local.broker = connection = connection.ensure_connection(max_retries=0)
        return connection

    def _drop_broker_connection(self) -> None:
        connection: kombu.Connection | None = getattr(self._local, "broker", None)
        if connection is not None:
            connection.release()
            self._local.broker = None
