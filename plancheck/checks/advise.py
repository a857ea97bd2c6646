"""STATEMENT_ADVISE: review a migration script against the SQL review rules (plancheck.checks.rules).

Pure logic: no database access except through the optional row estimator the caller supplies.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from plancheck.checks.limits import DEFAULT_LIMITS
from plancheck.checks.result import CheckResult, CheckType, Position, Status
from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME, lexer
from plancheck.checks.rules.base import FunctionVolatility, Level, RowEstimator, Rule, RuleContext
from plancheck.checks.rules.script import LineIndex, Script, SqlSyntaxError, parse_script, plain_node_building

__all__ = [
    "FunctionVolatility",
    "ReviewConfig",
    "RowEstimator",
    "Unreviewable",
    "batch",
    "parse",
    "review",
    "shared_parse",
]

MAX_SCRIPT_BYTES = DEFAULT_LIMITS.review_max_bytes  # of SQL, not counting comments and whitespace (see parse)
MAX_RESULTS_PER_STATUS = 50
TOO_LARGE_CODE = 200
SYNTAX_ERROR_CODE = 201


@dataclass(frozen=True)
class ReviewConfig:
    """Per-project rule levels and options; validated on construction (ValueError)."""

    levels: Mapping[str, str] = field(default_factory=dict)  # rule name -> ERROR | WARNING | DISABLED
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # rule name -> option overrides

    def __post_init__(self) -> None:
        for name, level in self.levels.items():
            _rule(name)
            if not isinstance(level, str) or level not in Level.__members__:
                raise ValueError(
                    f"sql_review rule {name}: bad level {level!r} (expected one of {', '.join(Level.__members__)})"
                )
        for name, overrides in self.options.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"sql_review rule {name}: options must be an object, got {overrides!r}")
            _rule(name).resolve_options(overrides)

    @classmethod
    def from_project_settings(cls, settings: Mapping[str, Any]) -> ReviewConfig:
        """Read settings["sql_review"] = {"rules": {name: {"level": ..., **options}}}."""
        review_settings = settings.get("sql_review") or {}
        rules = (review_settings.get("rules") or {}) if isinstance(review_settings, Mapping) else None
        if not isinstance(rules, Mapping):
            raise ValueError('settings "sql_review" must be {"rules": {rule name: {"level": ..., options...}}}')
        levels: dict[str, str] = {}
        options: dict[str, dict[str, Any]] = {}
        for name, entry in rules.items():
            if not isinstance(entry, Mapping):
                raise ValueError(f"sql_review rule {name}: expected an object with a level and options, got {entry!r}")
            overrides = dict(entry)
            if "level" in overrides:
                levels[name] = overrides.pop("level")
            options[name] = overrides
        return cls(levels, options)

    def level(self, rule: Rule) -> Level:
        return Level(self.levels.get(rule.name, rule.default_level))

    def options_for(self, rule: Rule) -> Mapping[str, Any]:
        return rule.resolve_options(self.options.get(rule.name, {}))

    @cached_property
    def active(self) -> list[tuple[Rule, Status, Mapping[str, Any]]]:
        """(rule, the status of its findings, its options) of every enabled rule, resolved once: a worker
        reviews many sheets with one project's config."""
        return [
            (rule, Status(level), self.options_for(rule))
            for rule in ALL_RULES
            if (level := self.level(rule)) is not Level.DISABLED
        ]


def _rule(name: str) -> Rule:
    rule = RULES_BY_NAME.get(name)
    if rule is None:
        close = difflib.get_close_matches(name, RULES_BY_NAME, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known rules: {', '.join(sorted(RULES_BY_NAME))}"
        raise ValueError(f"unknown sql_review rule {name!r}{hint}")
    return rule


@dataclass(frozen=True)
class Unreviewable:
    """Why a script has no parse to review (too large, or a syntax error): the review's one result."""

    status: Status
    title: str
    content: str
    code: int = 0
    position: Position | None = None


class _ParseCache:
    """The last parses, by the SHA-256 of their text: a fan-out plan checks one sheet on many targets in
    one worker process, and parses it once. Bounded by entries and by the text they hold (a parse takes
    about 30 bytes of memory per byte of SQL). Parses are shared, so nothing may change a Script."""

    def __init__(self, entries: int, text_bytes: int) -> None:
        self._entries, self._text_bytes = entries, text_bytes
        self._parses: OrderedDict[bytes, tuple[int, Script | Unreviewable]] = OrderedDict()
        self._size = 0  # text bytes held
        self._lock = threading.Lock()

    def get(
        self, sql: str, max_bytes: int, compute: Callable[[str, int], Script | Unreviewable]
    ) -> Script | Unreviewable:
        data = sql.encode("utf-8", "surrogatepass")
        key = hashlib.sha256(data).digest() + max_bytes.to_bytes(8, "big")
        with self._lock:
            if key in self._parses:
                self._parses.move_to_end(key)
                return self._parses[key][1]
        parsed = compute(sql, max_bytes)  # outside the lock: another thread may parse another sheet meanwhile
        if len(data) <= self._text_bytes:
            with self._lock:
                if key not in self._parses:
                    self._parses[key] = (len(data), parsed)
                    self._size += len(data)
                while len(self._parses) > self._entries or self._size > self._text_bytes:
                    self._size -= self._parses.popitem(last=False)[1][0]
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._parses.clear()
            self._size = 0


PARSES = _ParseCache(entries=4, text_bytes=2 * 1024 * 1024)  # a fan-out plan has few sheets


def batch() -> AbstractContextManager[None]:
    """Around the reviews of many sheets in a row (`plancheck review FILE…`): pglast's checked building
    of nodes is switched off once for all of them rather than once per sheet (see plain_node_building)."""
    return plain_node_building()


def shared_parse(sql: str, max_bytes: int = MAX_SCRIPT_BYTES) -> Script | Unreviewable:
    """parse(sql), once per process for a sheet checked on many targets (see _ParseCache)."""
    return PARSES.get(sql, max_bytes, parse)


def parse(sql: str, max_bytes: int = MAX_SCRIPT_BYTES) -> Script | Unreviewable:
    """The script as the rules read it: `check_target` gives it to the summary report too.

    Size is judged by what the parser must build: comments and whitespace cost nothing, so a script
    padded past `max_bytes` with them is still reviewed in full. A script with more SQL than that
    is not parsed and fails the review with an ERROR, so size can never hide a statement.
    """
    oversized = len(sql) > max_bytes or len(sql.encode("utf-8", "surrogatepass")) > max_bytes
    if oversized and lexer.code_exceeds(sql, max_bytes):
        return Unreviewable(
            Status.ERROR,
            "Script too large for review",
            f"The script has more than {max_bytes:,} bytes of SQL besides comments and "
            "whitespace, more than SQL review parses, so it was not reviewed and cannot pass. Split the "
            "change into smaller plans.",
            TOO_LARGE_CODE,
        )
    try:
        return parse_script(sql)
    except SqlSyntaxError as error:
        line, column = LineIndex(sql)(error.index)
        return Unreviewable(Status.ERROR, "Syntax error", error.message, SYNTAX_ERROR_CODE, Position(line, column))


def review(
    sql: str,
    target: str,
    config: ReviewConfig,
    estimate_rows: RowEstimator | None = None,
    *,
    parsed: Script | Unreviewable | None = None,
    function_volatility: FunctionVolatility | None = None,
    max_bytes: int = MAX_SCRIPT_BYTES,
) -> list[CheckResult]:
    """Review one script for one target: findings (ERRORs first, then by position), or one OK result.

    `parsed` is `parse(sql, max_bytes)` when the caller has it already. estimate_rows and function_volatility
    answer from the target, when there is one; their exceptions propagate to the caller.
    """
    script = parse(sql, max_bytes) if parsed is None else parsed
    if isinstance(script, Script) and script.text != sql:
        raise ValueError("parsed is not the parse of sql")
    if isinstance(script, Unreviewable):
        return [_result(target, script.status, script.title, script.content, script.code, script.position)]

    results = []
    for rule, status, options in config.active:
        for finding in rule.check(RuleContext(script, options, estimate_rows, function_volatility)):
            position = Position(*script.lines(finding.index))
            results.append(_result(target, status, rule.name, finding.message, rule.code, position))
    if not results:
        count = len(script.statements)
        summary = f"{count} statement{'s' if count != 1 else ''} reviewed, no findings"
        return [_result(target, Status.SUCCESS, "OK", summary)]
    return _limited(sorted(results, key=_order))


def _result(
    target: str, status: Status, title: str, content: str, code: int = 0, position: Position | None = None
) -> CheckResult:
    return CheckResult(status, CheckType.STATEMENT_ADVISE, target, title, content, code, position)


def _order(result: CheckResult) -> tuple[bool, int, int, int]:
    position = result.position or Position(0, 0)
    return result.status != Status.ERROR, position.line, position.column, result.code


def _limited(results: list[CheckResult]) -> list[CheckResult]:
    """At most MAX_RESULTS_PER_STATUS per status; the last one kept says how many were left out."""
    kept: list[CheckResult] = []
    for status in (Status.ERROR, Status.WARNING):
        of_status = [result for result in results if result.status == status]
        shown = of_status[:MAX_RESULTS_PER_STATUS]
        hidden = len(of_status) - len(shown)
        if hidden:
            note = f" ({hidden} more {status} findings not shown.)"
            shown[-1] = dataclasses.replace(shown[-1], content=shown[-1].content + note)
        kept += shown
    return kept
