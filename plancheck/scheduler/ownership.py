"""Which deployment a queue on the broker belongs to, so two never share one by mistake.

Two plancheck deployments (two metadata databases) pointed at the same Redis database or RabbitMQ
vhost with the same PLANCHECK_QUEUE would take each other's messages: a worker starts nothing for
a run its database does not know, so the other deployment's work would be lost until reaped. Each
worker therefore marks the queue with its deployment's id (from the metadata database) and refuses
to start when the mark names another. The mark lapses when no worker of its deployment has renewed
it for `ttl` seconds, so a retired deployment's queue name can be reused.

Redis holds the mark as a key with an expiry; RabbitMQ as the one message of a small marker queue
that expires when unused (`x-expires`; re-declaring renews it).
"""

from __future__ import annotations

from kombu import Connection, Exchange, Queue

from plancheck.core.settings import REDIS_SCHEMES


class QueueTaken(RuntimeError):
    """Another deployment uses this queue on this broker."""


def marker_name(queue: str) -> str:
    return f"{queue}.deployment"


def mark_queue(connection: Connection, broker_url: str, queue: str, deployment: str, ttl_seconds: int) -> None:
    """Mark `queue` as `deployment`'s, or renew the mark; QueueTaken if another deployment's mark is there."""
    mark = _redis_mark if broker_url.startswith(REDIS_SCHEMES) else _amqp_mark
    owner = mark(connection, marker_name(queue), deployment, ttl_seconds)
    if owner != deployment:
        raise QueueTaken(
            f"queue {queue!r} on this broker belongs to another plancheck deployment (metadata database id "
            f"{owner}); give each deployment a queue of its own with PLANCHECK_QUEUE, or its own Redis "
            "database / RabbitMQ vhost"
        )


def _redis_mark(connection: Connection, key: str, deployment: str, ttl_seconds: int) -> str:
    client = connection.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
    client.set(key, deployment, nx=True, ex=ttl_seconds)
    owner = client.get(key)
    owner = owner.decode() if isinstance(owner, bytes) else str(owner)
    if owner == deployment:
        client.expire(key, ttl_seconds)
    return owner


def _amqp_mark(connection: Connection, name: str, deployment: str, ttl_seconds: int) -> str:
    channel = connection.channel()
    try:
        marker = Queue(
            name, Exchange(""), routing_key=name, durable=True, queue_arguments={"x-expires": ttl_seconds * 1000}
        )(channel)
        marker.declare()
        message = marker.get(no_ack=False, accept=["json"])
        if message is None:
            connection.Producer(channel).publish(
                deployment, routing_key=name, serializer="json", delivery_mode=2, exchange=""
            )
            return deployment
        owner = str(message.payload)
        message.requeue()
        return owner
    finally:
        channel.close()
