"""Every statement on API tokens (table api_token) and the session-signing key (table api_secret).

Rows hold a token's SHA-256, never the token. Expiry is judged by PostgreSQL's clock, so every API
server process agrees on it whatever its own clock says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from plancheck.core.errors import Conflict


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    scope: str
    project: str | None
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    expired: bool


_SELECT = """
    SELECT t.id, t.name, t.scope, p.key AS project, t.secret_hash, t.created_at, t.expires_at, t.revoked_at,
           coalesce(t.expires_at <= now(), false) AS expired
    FROM api_token t LEFT JOIN project p ON p.id = t.project_id
"""

_CREATE = text(
    """
    INSERT INTO api_token (name, key_id, secret_hash, scope, project_id, expires_at)
    VALUES (:name, :key_id, :secret_hash, :scope, :project_id, now() + make_interval(secs => :expires_in))
    RETURNING id, expires_at
    """
)
_BY_KEY_ID = text(_SELECT + " WHERE t.key_id = :key_id")
_BY_ID = text(_SELECT + " WHERE t.id = :id")
_LIST = text(_SELECT + " ORDER BY t.id")
_REVOKE = text("UPDATE api_token SET revoked_at = now() WHERE name = :name AND revoked_at IS NULL RETURNING id")
_PUT_SECRET = text("INSERT INTO api_secret (id, secret) VALUES (1, :secret) ON CONFLICT (id) DO NOTHING")
_GET_SECRET = text("SELECT secret FROM api_secret WHERE id = 1")


def create(
    conn: Connection,
    name: str,
    key_id: str,
    secret_hash: str,
    scope: str,
    project_id: int | None,
    expires_in_seconds: float | None,
) -> tuple[int, datetime | None]:
    """Store a token's hash; returns its id and expiry. A name is unique among unrevoked tokens."""
    params = {
        "name": name,
        "key_id": key_id,
        "secret_hash": secret_hash,
        "scope": scope,
        "project_id": project_id,
        "expires_in": expires_in_seconds,
    }
    try:
        with conn.begin_nested():
            row = conn.execute(_CREATE, params).one()
    except IntegrityError:
        raise Conflict(f"a token named {name!r} exists; revoke it first or choose another name") from None
    return int(row.id), row.expires_at


def by_key_id(conn: Connection, key_id: str) -> TokenRow | None:
    row = conn.execute(_BY_KEY_ID, {"key_id": key_id}).one_or_none()
    return None if row is None else TokenRow(**row._asdict())


def by_id(conn: Connection, token_id: int) -> TokenRow | None:
    row = conn.execute(_BY_ID, {"id": token_id}).one_or_none()
    return None if row is None else TokenRow(**row._asdict())


def list_all(conn: Connection) -> list[TokenRow]:
    return [TokenRow(**row._asdict()) for row in conn.execute(_LIST).all()]


def revoke(conn: Connection, name: str) -> bool:
    """Revoke the unrevoked token called `name`; False if there is none."""
    return conn.execute(_REVOKE, {"name": name}).one_or_none() is not None


def session_secret(conn: Connection, candidate: str) -> str:
    """The stored session-signing key; `candidate` becomes it if none is stored yet (first caller wins)."""
    conn.execute(_PUT_SECRET, {"secret": candidate})
    return str(conn.execute(_GET_SECRET).scalar_one())
