"""A worker never dies of a message: malformed or oversized ones are dropped with one short log line.

plancheck's messages carry two ids and a token (under a kilobyte with Celery's headers); anything
else on its queue is a mistake or an attack, and must cost neither the worker nor its log. Two
places needed guarding:

* Celery's Redis transport (kombu) decodes each queue item as JSON before Celery sees it; an item
  that is not JSON (`LPUSH queue 'not json'`) raised out of the event loop and stopped the worker
  ("Unrecoverable error"), with no hook to intercept it (celery/celery#4308, celery/kombu#2421).
  `RedisTransport` drops such items, and envelopes without the shape kombu expects.
* Celery's consumer logs an undecodable message's headers in full, and passes any size on; a 98 MB
  item wrote 126 MB of log. And a message naming an unknown task without an `id` header raised out
  of its handler, so the consumer reconnected, restored the message and met it again, for ever.
  `Consumer` refuses messages over `MAX_MESSAGE_BYTES` before anything is decoded or logged, and
  drops undecodable, unknown and invalid messages with a line giving their size and kind only.
  This part covers RabbitMQ too.

celeryconfig.py selects both (`broker_transport` for redis URLs, `worker_consumer`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024


def _size(value: Any) -> int:
    """Bytes of `value` as JSON (what a log line or a decode would have to handle)."""
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return MAX_MESSAGE_BYTES + 1


def _well_formed(envelope: Any) -> bool:
    """The shape kombu's virtual transports deliver: a body string and properties with a delivery tag."""
    if not isinstance(envelope, Mapping):
        return False
    properties = envelope.get("properties")
    return (
        isinstance(envelope.get("body"), str | type(None))
        and isinstance(properties, Mapping)
        and isinstance(properties.get("delivery_tag"), str)
        and isinstance(properties.get("delivery_info", {}), Mapping)
        and isinstance(envelope.get("headers", {}), Mapping)
    )


def _dropped(queue: str, reason: str, size: int | None = None) -> None:
    where = f" ({size:,} bytes)" if size is not None else ""
    log.warning("dropped a message from queue %.80r: %s%s", queue, reason, where)


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that an item that is not JSON is dropped, not raised, and that a
    channel of a torn-down connection fails like a lost connection.

    The item was popped from its list before decoding failed, so dropping it loses nothing else.

    A Redis restart used to stop a worker now and then ("Unrecoverable error: AttributeError: 'NoneType'
    object has no attribute 'hostname'"): on a connection error Celery first `collect()`s the
    connection, which drops the transport's client even when closing the default channel failed half
    way (Redis was down), then `close()`s it, which closes that channel again and tries to restore
    its unacknowledged messages through the client-less transport — an AttributeError kombu does not
    count as a connection error (the family of celery/kombu#582, #970 and #2582). Raising a
    connection error instead lets the consumer reconnect; the messages it could not restore stay in
    Redis's unacked set, and PostgreSQL's leases bring back any work they carried.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis_errors.ConnectionError("the broker connection was already torn down")
        return dict(super()._connparams(asynchronous=asynchronous))

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))
        except ValueError as exc:  # json and unicode decode errors alike
            _dropped("?", f"not a JSON envelope ({type(exc).__name__})")
            return True

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        try:
            return super()._get(queue)
        except ValueError as exc:
            _dropped(queue, f"not a JSON envelope ({type(exc).__name__})")
            raise Empty() from None


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with `RedisChannel`, and envelopes checked before they are delivered."""

    Channel = RedisChannel

    def _deliver(self, message: Any, queue: str) -> None:
        if not _well_formed(message):
            _dropped(queue, "not a kombu message envelope")
            return
        size = _size(message)
        if size > MAX_MESSAGE_BYTES:
            _dropped(queue, f"larger than {MAX_MESSAGE_BYTES:,} bytes", size)
            return
        super()._deliver(message, queue)


class Consumer(CeleryConsumer):
    """Celery's worker consumer, refusing oversized messages and logging decode errors briefly."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            size = len(message.body or b"") + _size(message.headers)
            if size > MAX_MESSAGE_BYTES:
                self._drop(message, f"larger than {MAX_MESSAGE_BYTES:,} bytes")
                return None
            return handle(message)

        return on_task_received

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._drop(message, f"cannot be decoded ({type(exc).__name__}, content type {message.content_type!r:.40})")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._drop(message, "not a task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        task = (message.headers or {}).get("task") if isinstance(message.headers, Mapping) else None
        self._drop(message, f"unknown task {task!r:.80}")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._drop(message, f"invalid task message ({type(exc).__name__}: {exc!s:.200})")

    def _drop(self, message: Any, reason: str) -> None:
        _dropped(str(message.delivery_info.get("routing_key", "?")), reason, len(message.body or b""))
        message.reject_log_error(log, self.connection_errors)
