"""Identifiers longer than 63 bytes.

PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1): the object gets a
different name than the script says, and two long names sharing their first 63 bytes collide.
Use names of at most 63 bytes (multi-byte characters count as several bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from plancheck.checks.rules import lexer
from plancheck.checks.rules.base import Finding, Level, Rule, RuleContext

MAX_BYTES = 63
# A name over 63 bytes has at least 16 characters (4 bytes at most each): skip lexing scripts without one.
_CANDIDATE = re.compile(r'[\w$\x80-\U0010FFFF]{16}|"(?:[^"]|""){16}')

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
    if not _CANDIDATE.search(ctx.script.text):
        return
    seen: set[str] = set()
    for name, index in lexer.identifiers(ctx.script.text):
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


RULE = Rule("naming.identifier-max-length", 301, Level.ERROR, __doc__, check, BAD, GOOD)
