"""Who is calling: bearer tokens for the JSON API, signed session cookies (with CSRF) for the pages.

A page session holds only the token's id and a CSRF value, signed with the server's key; the
token is looked up again on every request, so revoking or expiring it ends its sessions too.
Every refusal is logged with the method, path, client and reason, never with the token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal, TypedDict

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from plancheck.api import Plancheck
from plancheck.api.access import Grant, Scope
from plancheck.core.errors import Forbidden, PlancheckError, Unauthorized

log = logging.getLogger("plancheck.server.auth")

SESSION_COOKIE = "plancheck_session"


def api_of(request: Request) -> Plancheck:
    api: Plancheck = request.app.state.api
    return api


def log_refusal(request: Request, status: int, reason: PlancheckError | str) -> None:
    client = request.client.host if request.client else "-"
    log.warning("refused %s %s from %s: %s %s", request.method, request.url.path, client, status, reason)


def bearer_grant(request: Request) -> Grant:
    """FastAPI dependency: the grant of the request's `Authorization: Bearer` token."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("no token: send the header 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return api_of(request).authenticate(token.strip())


GrantDep = Annotated[Grant, Depends(bearer_grant)]


def authorize(
    request: Request, grant: Grant, needed: Scope, *, project: str | None = None, plan_id: int | None = None
) -> None:
    """Forbidden unless the grant's scope covers `needed` and its project (if limited) owns the resource.

    `project=None` without a plan means the request spans every project.
    """
    if plan_id is not None and grant.project is not None and grant.scope.includes(needed):
        project = api_of(request).plan_project(plan_id)
    grant.require(needed, project)


@dataclass(frozen=True)
class Session:
    token_id: int
    csrf: str


class Sessions:
    """Issues and reads the page session cookie; the signing key comes from `secret_source` on first use."""

    def __init__(self, secret_source: Callable[[], str], max_age: int) -> None:
        self._secret_source = secret_source
        self.max_age = max_age

    @cached_property
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret_source(), salt="plancheck.session")

    def issue(self, grant: Grant) -> tuple[str, Session]:
        session = Session(grant.token_id, secrets.token_urlsafe(24))
        return self._serializer.dumps({"t": session.token_id, "c": session.csrf}), session

    def read(self, request: Request) -> Session | None:
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
            return Session(int(data["t"]), str(data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def secret_source(api: Plancheck) -> Callable[[], str]:
    """PLANCHECK_API_SECRET when set, else the key stored in the metadata database."""
    configured = api.settings.api_secret
    return (lambda: configured) if configured else api.session_secret


class LoginRequired(Unauthorized):
    """A page was asked for without a valid session: the answer is the login page."""


def page_session(request: Request) -> tuple[Grant, Session]:
    """FastAPI dependency for pages: the session's grant, checked against the token's current state."""
    session = request.app.state.sessions.read(request)
    if session is None:
        raise LoginRequired("log in with an API token")
    try:
        grant = api_of(request).session_grant(session.token_id)
    except Unauthorized as exc:
        raise LoginRequired(str(exc)) from None
    return grant, session


def check_csrf(request: Request, session: Session, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(submitted.encode(), session.csrf.encode()):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again")


class CookieFlags(TypedDict):
    httponly: bool
    samesite: Literal["strict"]
    secure: bool
    path: str


def cookie_flags(request: Request) -> CookieFlags:
    """HttpOnly, SameSite=Strict, and Secure whenever the page was served over https."""
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}
