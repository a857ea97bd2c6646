"""Which kombu transport plancheck uses for a broker URL."""

from __future__ import annotations

from plancheck.core.settings import REDIS_SCHEMES

# kombu's Redis transport, except that a malformed queue item is dropped instead of stopping the
# worker (see `guard`).
GUARDED_REDIS = "plancheck.scheduler.guard:RedisTransport"


def transport_for(broker_url: str) -> str:
    """The guarded Redis transport for redis URLs; for others, the transport the URL's scheme names."""
    return GUARDED_REDIS if broker_url.startswith(REDIS_SCHEMES) else broker_url.split("://", 1)[0]
