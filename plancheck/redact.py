"""Keep credentials out of results, logs and exception text.

Driver errors can echo parts of a connection string, and URLs get interpolated into messages; every
text that leaves a target connection passes through `redact` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MASK = "***"

# scheme://user:PASSWORD@ — any postgres scheme, with or without a +driver suffix.
_URL_PASSWORD = re.compile(r"(?P<head>\bpostgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)(?P<password>[^@\s]*)(?=@)")
# libpq keyword form: password=secret or password='se cret'.
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """Mask the password of every postgresql URL or `password=` keyword inside `text`."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url` as written and percent-decoded: both forms may turn up in messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    if not password:
        return ()
    return tuple({password, unquote(password)})


def redact(text: str, *secrets: str) -> str:
    """`text` with every given secret, and every password of an embedded URL, replaced by ***."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_urls(text)
