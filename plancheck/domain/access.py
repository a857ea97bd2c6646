"""API tokens: their format, how they are hashed and checked, and what a token's scope allows.

A token is `pct_<key id>_<secret>`. The key id (12 hex digits) is public and finds the stored row;
only the SHA-256 of the whole token is stored, and the presented token's hash is compared with it
in constant time. Scopes nest: admin ⊇ submit ⊇ read. A token may be limited to one project.
Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from plancheck.core.errors import Forbidden, InvalidInput

PREFIX = "pct_"
KEY_ID_HEX = 12
_TOKEN = re.compile(rf"{PREFIX}(?P<key_id>[0-9a-f]{{{KEY_ID_HEX}}})_(?P<secret>[A-Za-z0-9_-]{{43}})")
# Hash compared when the key id is unknown, so an unknown and a wrong token cost the same work.
_DUMMY_HASH = hashlib.sha256(b"plancheck: no such token").hexdigest()
MAX_EXPIRY = timedelta(days=3650)
_DURATION = re.compile(r"(?P<count>[1-9][0-9]{0,5})(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Scope(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"

    def includes(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: `token` is shown once; only `secret_hash` is stored."""

    key_id: str
    token: str
    secret_hash: str


@dataclass(frozen=True)
class Grant:
    """What an authenticated caller may do: its scope, and the one project it is limited to (if any)."""

    token_id: int
    name: str
    scope: Scope
    project: str | None

    def require(self, needed: Scope, project: str | None = None) -> None:
        """Raise Forbidden unless the scope includes `needed` and `project` is within the token's reach."""
        if not self.scope.includes(needed):
            raise Forbidden(f"token {self.name!r} has scope {self.scope}; this needs {needed}")
        if self.project is not None and project != self.project:
            where = f"project {project!r}" if project else "all projects"
            raise Forbidden(f"token {self.name!r} is limited to project {self.project!r}, not {where}")

    def can_see(self, project: str) -> bool:
        return self.project is None or self.project == project


def new_token() -> NewToken:
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewToken(key_id, token, hash_token(token))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The public key id of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return match["key_id"] if match else None


def matches(token: str, stored_hash: str | None) -> bool:
    """Whether `token` hashes to `stored_hash`, compared in constant time (None: no such token)."""
    return hmac.compare_digest(hash_token(token), stored_hash or _DUMMY_HASH) and stored_hash is not None


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        raise InvalidInput(f"scope {value!r} must be one of {', '.join(Scope)}") from None


def parse_duration(value: str) -> timedelta:
    """`90d`, `12h`, `30m`, `2w` or `45s` as a timedelta, at most ten years."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise InvalidInput(f"duration {value!r} must be a number and a unit (s, m, h, d or w), e.g. 90d")
    duration = timedelta(**{_UNITS[match["unit"]]: int(match["count"])})
    if duration > MAX_EXPIRY:
        raise InvalidInput(f"duration {value!r} is longer than ten years")
    return duration
