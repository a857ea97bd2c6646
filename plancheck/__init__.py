"""plancheck: plan checks for PostgreSQL change plans on a Celery cluster, PostgreSQL deciding every status."""

from plancheck.scheduler.app import app

__all__ = ["app"]
