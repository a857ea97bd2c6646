"""Keep credentials out of results, logs and exception text.

Driver errors can echo parts of a connection string, and URLs get interpolated into messages; every
text that leaves a target or metadata call passes through `error_line` (or `redact`) first.
"""

from __future__ import annotations

import re

from plancheck.core.conninfo import MASK, mask_keyword_passwords, secrets_of

__all__ = ["MASK", "error_line", "named_error_line", "redact", "redact_urls", "url_secrets"]

# scheme://user:PASSWORD@ — the password runs to the last @ of the URL, which may hold unencoded @.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>\S*)(?=@)", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """Mask the password of every URL or `password=` keyword inside `text`."""
    return mask_keyword_passwords(_URL_PASSWORD.sub(lambda m: m["head"] + MASK, text))


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url` in every spelling that may turn up in messages (raw, percent-encoded, …)."""
    return secrets_of(url)


def redact(text: str, *secrets: str) -> str:
    """`text` with every given secret, and every password of an embedded URL, replaced by ***."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_urls(text)


def _speaking(error: BaseException) -> BaseException:
    """The error whose text and type tell what went wrong: a SQLAlchemy error's driver error."""
    orig = getattr(error, "orig", None)
    return orig if isinstance(orig, BaseException) else error


def error_line(error: BaseException, *secrets: str) -> str:
    """The first line of an error's text (its type name if it has none), redacted: what may leave a
    target or metadata call."""
    error = _speaking(error)
    lines = str(error).strip().splitlines()
    return redact(lines[0] if lines else type(error).__name__, *secrets)


def named_error_line(error: BaseException, *secrets: str) -> str:
    """`Type: first line`, redacted, for stored reasons and logs where the error's kind matters."""
    error = _speaking(error)
    return f"{type(error).__name__}: {error_line(error, *secrets)}"
