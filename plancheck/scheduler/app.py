"""The Celery application; `celery -A plancheck` finds it as `plancheck.app`."""

from celery import Celery

app = Celery("plancheck")
app.config_from_object("celeryconfig")
