"""A Celery app with one no-op task and plancheck's own Celery settings (celeryconfig.py).

The overhead benchmark drains these with the same broker, pool, concurrency, serializer, late acks,
prefetch and events as plancheck's workers: `celery -A bench.noop_app worker ...`.
"""

from celery import Celery

app = Celery("pcb_noop")
app.config_from_object("celeryconfig")
# Only what has to differ: this module's task instead of plancheck's, and no beat schedule.
app.conf.include = []
app.conf.beat_schedule = {}


@app.task(name="bench.noop")
def noop() -> None:
    return None
