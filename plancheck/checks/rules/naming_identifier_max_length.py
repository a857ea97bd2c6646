"""Identifiers longer than 63 bytes.

PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1): the object gets a
different name than the script says, and two long names sharing their first 63 bytes collide.

Fix: use names of at most 63 bytes (multi-byte characters count as several bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pglast.parser import ParseError, scan

from plancheck.checks.rules import lexer
from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext
from plancheck.checks.rules.script import offset_mapping_affordable

MAX_BYTES = 63
# Unquoted, a name is a run of these characters (the parser's names are already truncated, so the
# text is read): over 63 bytes, the run is 64 ASCII characters or 16 and more with some non-ASCII.
_LONG_ASCII_RUN = re.compile(r"[A-Za-z0-9_$]{64}")
_LONG_RUN = re.compile(r"[A-Za-z0-9_$\x80-\U0010FFFF]{16,}")
_NAME_TOKENS = frozenset({"IDENT", "UIDENT"})  # plain or quoted; U&"…"
# A quoted name over 63 bytes has at least 16 characters (4 bytes each at most) after its opening quote,
# each a non-quote or a doubled quote: where this never matches, no quoted name is too long.
_LONG_QUOTED = re.compile(r'"(?:[^"]|""){16}')

BAD = [
    f"CREATE TABLE {'a' * 64} (id bigint PRIMARY KEY)",
    f'ALTER TABLE orders ADD COLUMN "{"é" * 32}" int',
    f"CREATE INDEX idx_{'x' * 60} ON orders (status)",
]
GOOD = [
    f"CREATE TABLE {'a' * 63} (id bigint PRIMARY KEY)",
    f"COMMENT ON TABLE orders IS '{'long text ' * 20}'",
    f"SELECT 1 -- {'x' * 100}",
]


def check(ctx: RuleContext) -> Iterator[Finding]:
    text = ctx.script.text
    if not _may_have_long_name(text):
        return
    seen: set[str] = set()
    for name, index in _identifiers(text):
        size = len(name.encode())
        if size > MAX_BYTES and name not in seen:
            seen.add(name)
            truncated = name.encode()[:MAX_BYTES].decode(errors="ignore")
            yield Finding(
                f'Identifier "{name}" is {size} bytes long: PostgreSQL silently truncates it to "{truncated}" '
                f"({MAX_BYTES} bytes), so the object gets a name the script does not show, and another long name "
                f"with the same first {MAX_BYTES} bytes collides with it. Use a name of at most {MAX_BYTES} bytes.",
                index,
            )


def _may_have_long_name(text: str) -> bool:
    """False when no identifier of text can be over MAX_BYTES: the usual case, found without lexing."""
    if _LONG_QUOTED.search(text):
        return True  # maybe a long quoted name: only lexing tells it from the text around it
    if text.isascii():
        # A 64-character name is inside a 64-character run without whitespace; C finds the longest fast.
        return max(map(len, text.split()), default=0) > MAX_BYTES and _LONG_ASCII_RUN.search(text) is not None
    return any(len(run.encode()) > MAX_BYTES for run in _LONG_RUN.findall(text))


def _identifiers(text: str) -> Iterator[tuple[str, int]]:
    """(name as written, before truncation; start index) of every identifier, from PostgreSQL's own scanner.

    The scanner maps offsets to characters as slowly as the parser (see script._offset_mapping_cost):
    on text with much non-ASCII, and should the scanner fail, the plancheck lexer reads the names.
    """
    if offset_mapping_affordable(text):
        try:
            tokens = scan(text)
        except ParseError:
            pass
        else:
            for token in tokens:
                if token.name in _NAME_TOKENS:
                    yield _name(text[token.start : token.end + 1]), token.start
            return
    yield from lexer.identifiers(text)


def _name(token: str) -> str:
    """abc -> abc, "a""b" -> a"b, U&"a" -> a (escapes are counted as written, like the lexer does)."""
    if not token.endswith('"'):
        return token
    return token[token.index('"') + 1 : -1].replace('""', '"')


RULE = Rule("naming.identifier-max-length", 301, Level.ERROR, __doc__, check, BAD, GOOD)
