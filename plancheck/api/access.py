"""Who may use the HTTP API: tokens (made, listed, revoked, checked) and the page sessions they open."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plancheck.api import inputs
from plancheck.api.base import ApiBase
from plancheck.core.errors import NotFound, Unauthorized
from plancheck.domain import access
from plancheck.domain.access import Grant, Scope

__all__ = ["AccessApi", "CreatedToken", "Grant", "Scope"]
from plancheck.store import catalog, tokens


@dataclass(frozen=True)
class CreatedToken:
    """A token as made: `token` is shown to its owner once and stored only as a hash."""

    id: int
    name: str
    scope: str
    project: str | None
    expires_at: datetime | None
    token: str


class AccessApi(ApiBase):
    def create_token(
        self, name: str, scope: str, project: str | None = None, expires: str | None = None
    ) -> CreatedToken:
        """A new API token (`expires` like 90d); the token itself is returned here and never again."""
        granted = access.parse_scope(scope)
        lifetime = access.parse_duration(expires).total_seconds() if expires else None
        made = access.new_token()
        with self.engine.begin() as conn:
            project_id = catalog.get_project(conn, project).id if project else None
            token_id, expires_at = tokens.create(
                conn,
                inputs.identifier(name, "token name"),
                made.key_id,
                made.secret_hash,
                granted,
                project_id,
                lifetime,
            )
        return CreatedToken(token_id, name, str(granted), project, expires_at, made.token)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token ever made, with its state (active, expired or revoked); never a token or hash."""
        with self.engine.connect() as conn:
            rows = tokens.list_all(conn)
        return [_token_json(row) for row in rows]

    def revoke_token(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not tokens.revoke(conn, name):
                raise NotFound(f"no unrevoked token named {name!r}")

    def authenticate(self, token: str) -> access.Grant:
        """What the bearer of `token` may do; Unauthorized for a malformed, unknown, expired or revoked one."""
        key_id = access.key_id_of(token)
        row = None
        if key_id is not None:
            with self.engine.connect() as conn:
                row = tokens.by_key_id(conn, key_id)
        if not access.matches(token, row.secret_hash if row else None):
            raise Unauthorized("the token is not valid")
        assert row is not None
        return _grant(row)

    def session_grant(self, token_id: int) -> access.Grant:
        """The grant behind a page session, checked again on every request (revocation ends sessions)."""
        with self.engine.connect() as conn:
            row = tokens.by_id(conn, token_id)
        if row is None:
            raise Unauthorized("the token of this session no longer exists")
        return _grant(row)

    def session_secret(self) -> str:
        """The key that signs page sessions: generated once, stored, shared by every server process."""
        with self.engine.begin() as conn:
            return tokens.session_secret(conn, secrets.token_urlsafe(48))


def _grant(row: tokens.TokenRow) -> access.Grant:
    if row.revoked_at is not None:
        raise Unauthorized(f"token {row.name!r} was revoked")
    if row.expired:
        raise Unauthorized(f"token {row.name!r} has expired")
    return access.Grant(row.id, row.name, access.Scope(row.scope), row.project)


def _token_json(row: tokens.TokenRow) -> dict[str, Any]:
    state = "revoked" if row.revoked_at else "expired" if row.expired else "active"
    fields = ("id", "name", "scope", "project", "created_at", "expires_at", "revoked_at")
    return {**{name: getattr(row, name) for name in fields}, "state": state}
