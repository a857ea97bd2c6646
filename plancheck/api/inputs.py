"""Input checks of the Python API: what a caller (CLI, HTTP API) may name and send.

Every value is checked at the edge with a one-line error that says what to send instead; bounds
keep names safe to print, to put in a URL and to compare.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from plancheck.checks.limits import MAX_LABELS
from plancheck.core.errors import MAX_ID, InvalidInput

MAX_NAME = 63
MAX_LABEL_VALUE = 255
MAX_GLOBS = 32
MAX_GLOB_LENGTH = 128
_IDENTIFIER = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_NAME}}}")
_LABEL_KEY = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_./-]{{0,{MAX_NAME - 1}}}")


def identifier(value: Any, what: str) -> str:
    """A key or environment name: bounded ASCII, safe to print, to put in a URL and to compare."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidInput(f"{what} {shown} must be 1 to {MAX_NAME} ASCII letters, digits, '-' or '_'")
    return value


def row_id(value: Any, what: str) -> int:
    """A row id as PostgreSQL stores it (bigint): a clear error instead of "bigint out of range"."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidInput(f"{what} id must be a whole number from 1 to {MAX_ID}, got {str(value)[:40]}")
    return value


def globs(patterns: Sequence[str], option: str) -> list[str]:
    """Shell-style patterns (`shop_*`, `tenant_?[0-9]`), bounded: matching them costs little."""
    if len(patterns) > MAX_GLOBS:
        raise InvalidInput(f"at most {MAX_GLOBS} {option} patterns are allowed, got {len(patterns)}")
    for pattern in patterns:
        if not pattern or len(pattern) > MAX_GLOB_LENGTH or not pattern.isprintable():
            raise InvalidInput(
                f"{option} pattern {repr(pattern)[:80]} must be 1 to {MAX_GLOB_LENGTH} printable characters"
            )
    return list(patterns)


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def labels(values: dict[str, str]) -> dict[str, str]:
    """At most MAX_LABELS labels (group expressions iterate them), with bounded keys and values."""
    if len(values) > MAX_LABELS:
        raise InvalidInput(f"a database has at most {MAX_LABELS} labels, got {len(values)}")
    for key, value in values.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(
                f"label key {repr(key)[:80]} must be 1 to {MAX_NAME} ASCII letters, digits, "
                "'-', '_', '.' or '/', starting with a letter or digit"
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"label {key!r}: the value must be text of at most {MAX_LABEL_VALUE} characters")
    return values


def split_target(target: str) -> tuple[str, str]:
    instance_key, _, name = target.partition("/")
    if not instance_key or not name or "/" in name:
        raise InvalidInput(f"target {target!r} must be INSTANCE/DATABASE")
    return instance_key, name


def decode_sql(data: bytes, max_bytes: int) -> str:
    """The plan's SQL as text, or a clear error for what PostgreSQL could not store or check."""
    if len(data) > max_bytes:
        raise InvalidInput(f"SQL file is {len(data)} bytes; the limit is {max_bytes} (PLANCHECK_MAX_SQL_BYTES)")
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"SQL file is not UTF-8 text (byte {exc.start} is invalid)") from None
    sql = sql.removeprefix("\ufeff")  # a byte order mark some editors write is not SQL
    if "\x00" in sql:
        raise InvalidInput("SQL file contains NUL bytes; is it a binary file?")
    if not sql.strip():
        raise InvalidInput("SQL file is empty")
    return sql
