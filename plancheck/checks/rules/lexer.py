"""A small PostgreSQL lexer: just enough to find comments, string literals and identifiers.

pglast cannot answer two questions the advisor needs:

* the real length of an identifier: the parser truncates names to 63 bytes before pglast sees them;
* where the literals and comments are, so non-ASCII text in them can be masked before parsing:
  pglast maps every byte offset to a character index by scanning a list of all multi-byte
  characters, which is quadratic (a 170 KB script of Japanese strings took 6 s, 2 MiB never ends).

Masking replaces characters with ``x``, which is an identifier character outside literals, so
the statement structure never changes even where this lexer and PostgreSQL disagree. (In a
dollar-quoted body, with a letter its tag does not have: ``$x$ $é$ $x$`` must not end at ``$é$``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

_IDENT_START = r"A-Za-z_\x80-\U0010FFFF"
_IDENT_CONT = _IDENT_START + r"0-9$"

_TOKEN = re.compile(
    rf"""
      (?P<line_comment>--[^\n\r]*)
    | (?P<block_comment>/\*)
    | (?P<string>[eE]'(?:[^'\\]+|\\.|'')*'?|'(?:[^']+|'')*'?)
    | (?P<quoted>(?:[uU]&)?"(?:[^"]+|"")*"?)
    | (?P<dollar>\$(?:[{_IDENT_START}][{_IDENT_START}0-9]*)?\$)
    | (?P<ident>[{_IDENT_START}][{_IDENT_CONT}]*)
    | [^-/'"${_IDENT_START}]+
    | .
    """,
    re.VERBOSE | re.DOTALL,
)
_BLOCK_EDGE = re.compile(r"/\*|\*/")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_WHITESPACE = re.compile(r"\s+")
_COUNT_EVERY = 4096  # tokens between two size counts in code_exceeds
_MASKS = "xyzXYZ"  # mask characters, by preference; a dollar-quoted body's must not be in its tag


class Kind(Enum):
    COMMENT = "comment"
    STRING = "string"
    IDENT = "ident"
    QUOTED = "quoted"


@dataclass(frozen=True)
class Token:
    """A comment, literal body or identifier: text[start:end]."""

    kind: Kind
    start: int
    end: int
    tag: str = ""  # of a dollar-quoted body: its quote, e.g. "$fn$"


def tokens(text: str) -> Iterator[Token]:
    """Comments, string literals (dollar-quoted: the body only) and identifiers, in order."""
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match is not None  # the last alternative matches any character
        kind, end = match.lastgroup, match.end()
        if kind == "block_comment":
            end = block_comment_end(text, pos)
            yield Token(Kind.COMMENT, pos, end)
        elif kind == "dollar":
            close = text.find(match.group(), end)
            body_end = len(text) if close < 0 else close
            yield Token(Kind.STRING, end, body_end, match.group())
            end = len(text) if close < 0 else close + len(match.group())
        elif kind is not None:
            yield Token(_KINDS[kind], pos, end)
        pos = end


_KINDS = {
    "line_comment": Kind.COMMENT,
    "string": Kind.STRING,
    "quoted": Kind.QUOTED,
    "ident": Kind.IDENT,
}


def block_comment_end(text: str, start: int) -> int:
    """End of the (nestable, possibly unterminated) block comment opening at start."""
    depth = 0
    for edge in _BLOCK_EDGE.finditer(text, start):
        depth += 1 if edge.group() == "/*" else -1
        if depth == 0:
            return edge.end()
    return len(text)


def code_exceeds(text: str, limit: int) -> bool:
    """Whether text holds more than limit UTF-8 bytes outside comments and whitespace, which is what the
    parser has to build a tree from. Lexing stops once past limit: a huge script costs about limit bytes."""
    if _code_bytes(text) <= limit:
        return False  # even with its comments counted: no need to lex
    size = done = 0
    for count, token in enumerate(tokens(text), 1):
        if token.kind is Kind.COMMENT or count % _COUNT_EVERY == 0:
            size += _code_bytes(text[done : token.start])
            done = token.end if token.kind is Kind.COMMENT else token.start
            if size > limit:
                return True
    return size + _code_bytes(text[done:]) > limit


def _code_bytes(text: str) -> int:
    return sum(len(part.encode("utf-8", "surrogatepass")) for part in _WHITESPACE.split(text))


def mask_literals(text: str) -> str:
    """text with every non-ASCII character inside comments and literals replaced by ``x``."""
    if text.isascii():
        return text
    pieces: list[str] = []
    done = 0
    for token in tokens(text):
        if token.kind in (Kind.COMMENT, Kind.STRING):
            body = text[token.start : token.end]
            mask = "" if body.isascii() else next((letter for letter in _MASKS if letter not in token.tag), "")
            if mask:  # (no letter left: the body stays as it is, slower to parse but right)
                pieces += [text[done : token.start], mask_all(body, mask)]
                done = token.end
    pieces.append(text[done:])
    return "".join(pieces)


def mask_all(text: str, mask: str = "x") -> str:
    """text with every non-ASCII character replaced by mask, ``x`` (same length in characters)."""
    return _NON_ASCII.sub(lambda m: mask * len(m.group()), text)


def identifiers(text: str) -> Iterator[tuple[str, int]]:
    """(name as PostgreSQL sees it before truncation, start index) of every identifier."""
    for token in tokens(text):
        if token.kind is Kind.IDENT:
            yield text[token.start : token.end], token.start
        elif token.kind is Kind.QUOTED:
            raw = text[token.start : token.end]
            body = raw[raw.index('"') + 1 :]
            yield body.removesuffix('"').replace('""', '"'), token.start
