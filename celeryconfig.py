"""Celery settings for plancheck, read by `celery -A plancheck ...`.

Every value comes from plancheck's environment settings (see README "Settings"). PostgreSQL
holds every status, so there is no result backend: the broker (Redis or RabbitMQ) carries
messages only.
"""

from plancheck.core.settings import REDIS_SCHEMES, load_settings
from plancheck.scheduler.transport import transport_for

_settings = load_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# For Redis, kombu's transport except that a malformed queue item is dropped instead of stopping
# the worker (plancheck/scheduler/guard.py).
broker_transport = transport_for(broker_url)
if broker_url.startswith(REDIS_SCHEMES):
    # Messages of a worker killed without acking come back after this long; the reaper is faster.
    broker_transport_options = {"visibility_timeout": 3600}
# Oversized and undecodable messages are dropped with one short log line, on any broker.
worker_consumer = "plancheck.scheduler.guard:Consumer"

# One deployment's names on the broker: its task queue, and the exchanges of `celery inspect`,
# Flower and events, so deployments sharing a broker never take each other's messages (a worker
# refuses to start on a queue another deployment uses: plancheck/scheduler/slots.py).
task_default_queue = _settings.queue
task_default_exchange = _settings.queue
task_default_routing_key = _settings.queue
control_exchange = _settings.queue
event_exchange = f"{_settings.queue}.events"

# JSON only: a pickled message is rejected, never executed.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

result_backend = None
task_ignore_result = True

# Long tasks: ack after the work, redeliver if the worker dies, reserve one message per slot. Claims
# never send more work than there are free slots, so nothing waits behind a busy slot anyway.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Flower shows every task.
worker_send_task_events = True
task_send_sent_event = True

include = ["plancheck.scheduler.tasks"]

# Beat keeps nothing on disk (an in-memory scheduler that records a heartbeat row in PostgreSQL) and
# runs claim, reap and relay in its own process, so they never wait for a worker slot: any number
# of beats may run, and a missed or doubled tick is harmless.
beat_scheduler = "plancheck.scheduler.beat:Scheduler"
beat_schedule = {
    "claim": {"task": "plancheck.claim", "schedule": _settings.claim_interval},
    "reap": {"task": "plancheck.reap", "schedule": _settings.reap_interval},
    "relay": {"task": "plancheck.relay", "schedule": _settings.relay_interval},
}
