"""`plancheck status`: is this deployment healthy? One probe per moving part, each bounded in time.

Probes: the metadata database (reachable, at the Alembic head), the broker, workers answering a
ping, a beat seen recently, and the backlog. Details never contain a password: URLs are shown with
the password masked and error texts pass through `redact`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery
from kombu import Connection as BrokerConnection
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from plancheck.core.conninfo import display_url
from plancheck.core.redact import named_error_line, url_secrets
from plancheck.core.settings import Settings
from plancheck.store import beats, db
from plancheck.store import metrics as queries


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": [asdict(check) for check in self.checks]}


def _error(exc: BaseException, *urls: str) -> str:
    """One line naming the error, with the passwords of `urls` (and of any URL in it) masked."""
    secrets = [secret for url in urls for secret in url_secrets(url)]
    return named_error_line(exc, *secrets)[:300]


def check_database(settings: Settings, timeout: float) -> Check:
    url = settings.database_url
    try:
        current = db.current_revision(url, db.probe_engine(url, max(1, round(timeout))))
        head = db.head_revision(url)
    except SQLAlchemyError as exc:
        return Check("database", False, f"unreachable: {display_url(url)} ({_error(exc, url)})")
    data = {"revision": current, "head": head}
    if current != head:
        return Check("database", False, f"at revision {current}, head is {head}: run `plancheck db upgrade`", data)
    return Check("database", True, f"{display_url(url)} at head {head}", data)


def check_broker(settings: Settings, timeout: float) -> Check:
    url = settings.broker_url
    try:
        with BrokerConnection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        return Check("broker", False, f"unreachable: {display_url(url)} ({_error(exc, url)})")
    return Check("broker", True, display_url(url))


def ping_workers(broker_url: str, queue: str, timeout: float) -> list[str]:
    """Names of this deployment's workers (those of `queue`) answering a ping within `timeout` seconds.

    A throwaway app bound to the URL: `control.ping(connection=...)` still publishes through the
    app's own producer pool, i.e. to the broker of the app's configuration, not to `connection`.
    """
    probe = Celery("plancheck-status", broker=broker_url, set_as_current=False)
    probe.conf.update(accept_content=["json"], broker_connection_timeout=timeout, control_exchange=queue)
    try:
        replies = probe.control.ping(timeout=timeout)
    finally:
        probe.close()
    return sorted(name for reply in replies for name in reply)


def check_workers(settings: Settings, timeout: float) -> Check:
    url = settings.broker_url
    try:
        names = ping_workers(url, settings.queue, timeout)
    except Exception as exc:
        return Check("workers", False, f"ping failed ({_error(exc, url)})")
    if not names:
        return Check("workers", False, f"no worker answered a ping within {timeout:g}s", {"workers": []})
    return Check("workers", True, f"{len(names)} answering: {', '.join(names)}", {"workers": names})


def check_beat(seen: list[beats.BeatSeen], stale_seconds: float) -> Check:
    """A beat silent for `stale_seconds` (PLANCHECK_BEAT_STALE_SECONDS) schedules no claims."""
    data: dict[str, object] = {
        "beats": [{"name": beat.name, "age_seconds": round(beat.age_seconds, 3)} for beat in seen]
    }
    if not seen:
        return Check("beat", False, "no beat has ever recorded a heartbeat", data)
    alive = [beat for beat in seen if beat.age_seconds <= stale_seconds]
    newest = seen[0].age_seconds
    data["last_seen_age_seconds"] = round(newest, 3)
    if not alive:
        return Check("beat", False, f"last seen {newest:.0f}s ago (stale after {stale_seconds:g}s)", data)
    return Check("beat", True, f"{len(alive)} alive, last seen {newest:.1f}s ago", data)


def check_backlog(backlog: queries.Backlog) -> Check:
    """Informational: a backlog is normal under load; dead workers or beats fail their own checks."""
    data = {"available": backlog.available, "oldest_available_age_seconds": backlog.oldest_age_seconds}
    if not backlog.available:
        return Check("backlog", True, "0 AVAILABLE", data)
    return Check(
        "backlog", True, f"{backlog.available} AVAILABLE, oldest waiting {backlog.oldest_age_seconds:.1f}s", data
    )


def _database_checks(settings: Settings, timeout: float) -> list[Check]:
    url = settings.database_url
    try:
        with db.probe_engine(url, max(1, round(timeout))).connect() as conn:
            backlog = queries.backlog(conn)
            try:
                with conn.begin_nested():
                    seen = beats.seen(conn)
            except ProgrammingError:
                return [
                    Check("beat", False, "unknown: no beat_heartbeat table (database not at head)"),
                    check_backlog(backlog),
                ]
    except SQLAlchemyError:
        reason = "unknown: database unreachable"
        return [Check("beat", False, reason), Check("backlog", False, reason)]
    return [check_beat(seen, settings.beat_stale_seconds), check_backlog(backlog)]


def check_all(settings: Settings, timeout: float = 1.0) -> Health:
    """Every probe; each gives up within about `timeout` seconds (a connect at least 1 s)."""
    checks = [check_database(settings, timeout), check_broker(settings, timeout)]
    if checks[1].ok:
        checks.append(check_workers(settings, timeout))
    else:
        checks.append(Check("workers", False, "unknown: broker unreachable"))
    checks.extend(_database_checks(settings, timeout))
    return Health(checks)
