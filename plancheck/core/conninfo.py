"""Connection parameters of PostgreSQL: the one place a connection URL is read.

A URL is read once into libpq keyword parameters (user, password, host, port, dbname and the query's
keywords). Connections are made from those keywords — `make_conninfo` for psycopg, a SQLAlchemy `URL`
object for the metadata engine — never by rendering a URL back to text: a rendered URL loses the
quoting of a password holding spaces, `@`, `%` or quotes, and libpq then misreads it (or, worse,
echoes it in an error).

The user info is read leniently, because passwords are pasted as they are: it ends at the last `@`
before the query, so an unencoded `@`, `:`, `/` or space in the password still works; `%XX` escapes
are decoded. Error messages never repeat any part of the URL that could be a password.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

SQLALCHEMY_DRIVER = "postgresql+psycopg"
MASK = "***"
MAX_PORT = 65535
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES_SCHEME = re.compile(r"postgres(?:ql)?(?:\+\w+)?")
_QUERY_KEY = re.compile(r"[a-z_]+")
_EXAMPLE = "postgresql://user[:password]@host[:port]/database"
# libpq keyword form: password=secret or password='se cret'.
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)


class InvalidURL(ValueError):
    """A connection URL plancheck cannot use; the message never contains the URL's password."""


class _URLParts(NamedTuple):
    """A URL cut at its first `?` and, before it, at its last `@`; nothing decoded yet."""

    scheme: str
    userinfo: str | None  # None without an @
    location: str  # host[:port][,…][/database]
    query: str | None  # None without a ?


def _split(url: str) -> _URLParts | None:
    match = _SCHEME.match(url)
    if match is None:
        return None
    head, question, query = url[match.end() :].partition("?")
    userinfo, at, location = head.rpartition("@")
    return _URLParts(match["scheme"], userinfo if at else None, location, query if question else None)


def connection_params(url: str) -> dict[str, str]:
    """libpq keyword parameters of a postgresql:// URL (any +driver suffix) or of a key=value string."""
    parts = _split(url)
    if parts is None:
        return _keyword_params(url)
    if not _POSTGRES_SCHEME.fullmatch(parts.scheme):
        raise InvalidURL(f"must be a postgresql:// URL, not {parts.scheme}://")
    params: dict[str, str] = {}
    if parts.userinfo is not None:
        user, colon, password = parts.userinfo.partition(":")
        params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    hosts, _, database = parts.location.partition("/")
    params.update(_hosts(hosts))
    if database:
        params["dbname"] = unquote(database)
    params.update(_query(parts.query or ""))
    _check_ports(params.get("port", ""))
    return {key: value for key, value in params.items() if value != ""}


def conninfo(url: str, **overrides: str | int) -> str:
    """A libpq connection string (key=value, quoted by psycopg) for `url`, with `overrides` applied."""
    from psycopg.conninfo import make_conninfo  # psycopg is imported where a connection is made, not by the CLI

    return make_conninfo(**{**connection_params(url), **{key: str(value) for key, value in overrides.items()}})


def engine_url(url: str) -> URL:
    """A SQLAlchemy URL object for the psycopg 3 driver, built from the parameters (never re-parsed)."""
    from sqlalchemy.engine import URL  # only the metadata engine needs it: checks and the review do not

    params = connection_params(url)
    user, password, database = params.pop("user", None), params.pop("password", None), params.pop("dbname", None)
    return URL.create(SQLALCHEMY_DRIVER, username=user, password=password, database=database, query=params)


def password_forms(password: str | None) -> tuple[str, ...]:
    """Every spelling in which a password can turn up in a text: as is, percent-encoded, quoted for a
    libpq connection string, escaped by JSON."""
    if not password:
        return ()
    forms = {
        password,
        quote(password, safe=""),
        quote(password),
        quote_plus(password),
        password.replace("\\", "\\\\").replace("'", "\\'"),
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
    }
    return tuple(forms)


def secrets_of(url: str) -> tuple[str, ...]:
    """The password of `url` in every spelling (`password_forms`), plus its text as written in the URL."""
    parts = _split(url)
    written = (parts.userinfo.partition(":")[2],) if parts and parts.userinfo else ()
    try:
        password = connection_params(url).get("password")
    except InvalidURL:
        password = None
    return tuple(secret for secret in {*written, *password_forms(password)} if secret)


def display_url(url: str) -> str:
    """`url` with its password replaced by ***, for people; any scheme (postgresql, redis, amqp)."""
    parts = _split(url)
    if parts is None:
        return mask_keyword_passwords(url)
    user = ""
    if parts.userinfo is not None:
        name, colon, _ = parts.userinfo.partition(":")
        user = f"{name}:{MASK}@" if colon else f"{name}@"
    query = "" if parts.query is None else "?" + re.sub(r"(?i)(\bpassword=)[^&]*", rf"\g<1>{MASK}", parts.query)
    return f"{parts.scheme}://{user}{parts.location}{query}"


def mask_keyword_passwords(text: str) -> str:
    """`text` with the value of every libpq `password=…` keyword (quoted or not) replaced by ***."""
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def _keyword_params(text: str) -> dict[str, str]:
    if "=" not in text:
        raise InvalidURL(f"must look like {_EXAMPLE}")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(text)
    except ProgrammingError:
        raise InvalidURL(f"is neither a URL like {_EXAMPLE} nor a valid key=value connection string") from None
    _check_ports(str(params.get("port", "")))
    return {key: str(value) for key, value in params.items()}


def _hosts(text: str) -> dict[str, str]:
    """host[:port] or [ipv6][:port], comma-separated for several hosts, as libpq's host and port lists."""
    if not text:
        return {}
    hosts, ports = [], []
    for part in text.split(","):
        if part.startswith("["):
            host, bracket, tail = part[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise InvalidURL("has a malformed [IPv6] host")
            port = tail[1:]
        else:
            host, _, port = part.partition(":")
        hosts.append(unquote(host))
        ports.append(port)
    params = {"host": ",".join(hosts)}
    if any(ports):
        params["port"] = ",".join(ports)
    return params


def _query(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in filter(None, text.split("&")):
        key, equals, value = pair.partition("=")
        if not equals or not _QUERY_KEY.fullmatch(key):
            raise InvalidURL("has a malformed query: expected ?keyword=value&… with libpq keywords")
        params[key] = unquote(value)
    return params


def _check_ports(ports: str) -> None:
    for port in filter(None, ports.split(",")):
        if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
            raise InvalidURL(f"has an invalid port: a port is a number from 1 to {MAX_PORT}")
