"""The plan verbs of the Python API over HTTP, for a CLI that holds only a token.

With PLANCHECK_API_URL and PLANCHECK_TOKEN set, `plancheck plan create|checks|rerun|cancel` use
`HttpClient` instead of `plancheck.api.Plancheck`: same methods, same return values, same errors
(the server's JSON error becomes the matching `PlancheckError`), and no database URL needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from plancheck.api.inputs import decode_sql
from plancheck.api.plans import Checks
from plancheck.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PlancheckError, Unauthorized
from plancheck.core.settings import SettingsError, load_settings

if TYPE_CHECKING:
    import httpx

API_URL_VARIABLE = "PLANCHECK_API_URL"
TOKEN_VARIABLE = "PLANCHECK_TOKEN"
LONG_POLL_SECONDS = 10.0  # per request while waiting, so progress shows at least this often
REQUEST_TIMEOUT = 60.0
_ERRORS: dict[int, type[PlancheckError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
    400: InvalidInput,
}


def from_environment(env: Mapping[str, str] | None = None) -> HttpClient | None:
    """A client when PLANCHECK_API_URL and PLANCHECK_TOKEN are both set; None when neither is."""
    env = os.environ if env is None else env
    url, token = env.get(API_URL_VARIABLE, "").strip(), env.get(TOKEN_VARIABLE, "").strip()
    if not url and not token:
        return None
    if not url or not token:
        missing = API_URL_VARIABLE if not url else TOKEN_VARIABLE
        raise SettingsError(f"{missing} is not set: the HTTP API needs both {API_URL_VARIABLE} and {TOKEN_VARIABLE}")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"{API_URL_VARIABLE} must be an http:// or https:// URL")
    return HttpClient(url, token)


class HttpClient:
    def __init__(self, url: str, token: str, timeout: float = REQUEST_TIMEOUT) -> None:
        import httpx  # here: a CLI that talks to the database never loads it

        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "plancheck-cli"},
        )

    def create_plan(
        self,
        project: str,
        sql: bytes | str,
        targets: Sequence[str] = (),
        group: str | None = None,
        title: str | None = None,
    ) -> int:
        """Submit a plan; the SQL is checked here first (size, UTF-8, NUL, empty), as the server would."""
        text = decode_sql(sql if isinstance(sql, bytes) else sql.encode(), load_settings().max_sql_bytes)
        body: dict[str, Any] = {"sql": text, "title": title}
        body.update({"group": group} if group else {"targets": list(targets)})
        response = self._request("POST", f"/api/v1/projects/{quote(project, safe='')}/plans", json=body)
        return int(response.json()["plan_id"])

    def checks(self, plan_id: int, wait: float = 0) -> Checks:
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        response = self._request(
            "GET", f"/api/v1/plans/{plan_id}/checks", params=params, timeout=REQUEST_TIMEOUT + wait
        )
        return checks_from_json(response.json())

    def wait(
        self,
        plan_id: int,
        timeout: float = 300.0,
        poll: float = 0.2,
        on_progress: Callable[[Checks], None] = lambda checks: None,
    ) -> Checks:
        """Long-poll until the run is finished or `timeout` passes; returns the last view (`poll` is unused:
        the server wakes the request when the run ends)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            checks = self.checks(plan_id, wait=min(max(remaining, 0.0), LONG_POLL_SECONDS))
            on_progress(checks)
            if checks.finished or time.monotonic() >= deadline:
                return checks

    def rerun(self, plan_id: int) -> None:
        self._request("POST", f"/api/v1/plans/{plan_id}/rerun")

    def cancel(self, plan_ids: Sequence[int]) -> list[int]:
        """Cancel each plan's unfinished run; returns the plans whose run was cancelled."""
        return [
            plan_id
            for plan_id in plan_ids
            if self._request("POST", f"/api/v1/plans/{plan_id}/cancel").json()["canceled"]
        ]

    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise PlancheckError(f"cannot reach the plancheck API at {self.url} ({type(exc).__name__})") from None
        if response.is_success:
            return response
        raise _error(response)


def _error(response: httpx.Response) -> PlancheckError:
    """The server's `{"error", "message"}` as the error the Python API would have raised."""
    try:
        message = str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code} {response.reason_phrase}"
    kind = _ERRORS.get(response.status_code)
    if kind is None:
        return PlancheckError(f"the plancheck API answered {response.status_code}: {message}")
    return kind(message)


def checks_from_json(document: Mapping[str, Any]) -> Checks:
    """A `Checks` from its JSON document: fields this version does not know are ignored, attempt
    times become datetimes again (so tables print them as they do from the database)."""
    known = {field.name for field in fields(Checks)}
    values = {key: value for key, value in document.items() if key in known}
    values["attempts"] = [
        {
            key: datetime.fromisoformat(value) if key.endswith("_at") and isinstance(value, str) else value
            for key, value in attempt.items()
        }
        for attempt in document.get("attempts", [])
    ]
    return Checks(**values)
