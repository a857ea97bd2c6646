"""Celery settings for plancheck, read by `celery -A plancheck ...`.

Every value comes from plancheck's environment settings (see README "Settings"). PostgreSQL
holds every status, so there is no result backend: Redis carries messages only.
"""

from plancheck.settings import load_settings

_settings = load_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# Messages of a worker killed without acking come back after this long; the reaper is faster.
broker_transport_options = {"visibility_timeout": 3600}

# JSON only: a pickled message is rejected, never executed.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

result_backend = None
task_ignore_result = True

# Long tasks: ack after the work, redeliver if the worker dies, reserve one message at a time.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Flower shows every task.
worker_send_task_events = True
task_send_sent_event = True

include = ["plancheck.scheduler.tasks"]

# Beat keeps nothing on disk (an in-memory scheduler that records a heartbeat row in PostgreSQL):
# any number of beats may run, and a missed or doubled tick is harmless.
beat_scheduler = "plancheck.scheduler.beat:Scheduler"
beat_schedule = {
    "claim": {
        "task": "plancheck.claim",
        "schedule": _settings.claim_interval,
        "options": {"expires": _settings.claim_interval * 5},
    },
    "reap": {
        "task": "plancheck.reap",
        "schedule": _settings.reap_interval,
        "options": {"expires": _settings.reap_interval * 5},
    },
    "relay": {
        "task": "plancheck.relay",
        "schedule": _settings.relay_interval,
        "options": {"expires": _settings.relay_interval * 5},
    },
}
