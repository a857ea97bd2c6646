"""Everything the CLI prints for people (tables, progress) and for machines (JSON), plus exit codes.

Command parsing lives in the other `plancheck.cli` modules; this one never talks to the API.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from plancheck.api.present import (
    TargetResults,
    duration_text,
    group_results,
    json_text,
    level_counts,
    position_text,
    summary_text,
)
from plancheck.checks.result import Status
from plancheck.core.states import RunStatus

if TYPE_CHECKING:
    from plancheck.api import Checks

LEVEL_STYLE: dict[str, str] = {Status.ERROR: "bold red", Status.WARNING: "yellow", Status.SUCCESS: "green"}
STATUS_STYLE = {
    RunStatus.DONE: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELED: "magenta",
    RunStatus.RUNNING: "cyan",
    RunStatus.AVAILABLE: "cyan",
}

# C0 and C1 control characters, DEL, and the bidirectional-text controls that reorder what a terminal
# shows: in names, titles, messages or reasons (user or target content) they could clear the screen,
# retitle the window or hide text, so they are shown as escapes instead.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# `plan checks` exit codes (README "Exit codes").
EXIT_CLEAN = 0
EXIT_ERRORS = 1
EXIT_NOT_DONE = 2


# -- pure logic -----------------------------------------------------------------------------------
def exit_code(status: str, results: Sequence[Mapping[str, Any]]) -> int:
    """0: DONE without ERROR results; 1: DONE with ERROR results; 2: anything else (FAILED, CANCELED,
    or not finished: still AVAILABLE/RUNNING, or the wait timed out)."""
    if status != RunStatus.DONE:
        return EXIT_NOT_DONE
    return EXIT_ERRORS if any(result.get("status") == "ERROR" for result in results) else EXIT_CLEAN


def first_sentence(message: str, minimum: int = 20) -> str:
    """The message up to its first ': ', '. ' or '; ' past `minimum` characters (compact reports)."""
    cuts = [index for sep in (": ", ". ", "; ") if (index := message.find(sep, minimum)) != -1]
    return message[: min(cuts)] + " …" if cuts else message


def progress_text(status: str, done: int, total: int | None, elapsed: float) -> str:
    targets = f"{done}/{total} targets" if total is not None else f"{done} targets"
    return f"{status} {targets}, {elapsed:.1f}s elapsed"


# -- text for a terminal --------------------------------------------------------------------------
def plain(value: Any, newlines: bool = False) -> str:
    """`value` as text a terminal shows literally: control characters as escapes (`\\x1b`, `\\u202e`),
    line breaks kept only when `newlines` says a break is intended."""
    return _CONTROL.sub(lambda m: m[0] if newlines and m[0] == "\n" else repr(m[0])[1:-1], str(value))


def safe(value: Any, newlines: bool = False) -> str:
    """`plain` with rich markup escaped: for user or target text inside markup (tables, styled lines)."""
    return escape(plain(value, newlines))


# -- JSON -----------------------------------------------------------------------------------------
def print_json(console: Console, data: Any) -> None:
    """Exact JSON; on a terminal highlighted, with every non-ASCII character escaped (C1 controls too)."""
    if console.is_terminal:
        console.print_json(json_text(data), ensure_ascii=True)
    else:
        console.file.write(json_text(data) + "\n")


# -- tables for people ----------------------------------------------------------------------------
def key_value_table(rows: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(safe(key), safe("" if value is None else value))
    return table


def labels_text(labels: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted((labels or {}).items()))


def databases_table(databases: Sequence[Mapping[str, Any]], title: str = "Databases") -> Table:
    table = Table(title=title)
    table.add_column("target", style="bold")
    table.add_column("environment")
    table.add_column("labels")
    for database in databases:
        table.add_row(
            safe(database["target"]), safe(database.get("environment") or ""), safe(labels_text(database.get("labels")))
        )
    return table


def target_table(group: TargetResults, compact: bool = False) -> Table:
    """One target's findings: level, rule, line:col, message (its first sentence when compact)."""
    table = Table(expand=False)
    table.add_column("level", no_wrap=True)
    table.add_column("rule")
    table.add_column("line:col", no_wrap=True, justify="right")
    table.add_column("message", overflow="fold")
    for finding in group.findings:
        level = str(finding.get("status", ""))
        content = str(finding.get("content", ""))
        table.add_row(
            Text(plain(level), style=LEVEL_STYLE.get(level, "")),
            safe(finding.get("title", "")),
            safe(position_text(finding)),
            safe(first_sentence(content) if compact else content, newlines=True),
        )
    if not group.findings:
        table.add_row("", "", "", "[dim]no findings[/]")
    return table


def tasks_table(tasks: Sequence[Mapping[str, Any]], title: str) -> Table:
    """A rollout's tasks: target and status."""
    table = Table(title=title, title_justify="left")
    table.add_column("target")
    table.add_column("status")
    for task in tasks:
        table.add_row(safe(task.get("target")), safe(task.get("status")))
    return table


def attempts_table(attempts: Sequence[Mapping[str, Any]]) -> Table:
    """Every execution: the run's own (part "run"), and each chunk's of a fanned-out run, retries included."""
    table = Table(title="Attempts", title_justify="left")
    for column in ("generation", "part", "attempt", "worker", "started", "took", "outcome"):
        table.add_column(column)
    for attempt in attempts:
        started = attempt.get("started_at")
        chunk = attempt.get("chunk")
        table.add_row(
            str(attempt.get("generation", "")),
            "run" if chunk is None else f"chunk {chunk}",
            str(attempt.get("attempt", "")),
            safe(attempt.get("worker") or ""),
            started.isoformat(timespec="seconds") if isinstance(started, datetime) else str(started or ""),
            duration_text(started, attempt.get("finished_at")),
            safe(attempt.get("outcome") or "running"),
        )
    return table


def status_line(checks: Checks) -> str:
    style = STATUS_STYLE.get(RunStatus(checks.status), "") if checks.status in set(RunStatus) else ""
    counts = level_counts(checks.results)
    total = "?" if checks.targets_total is None else str(checks.targets_total)
    state = checks.status
    if checks.status == RunStatus.AVAILABLE:
        state += " (waiting for a free worker slot)"
    elif checks.status == RunStatus.RUNNING and not any(attempt.get("outcome") is None for attempt in checks.attempts):
        state += " (claimed, waiting for a worker)"
    line = (
        f"plan {checks.plan_id}: [{style}]{state}[/] — {checks.targets_done}/{total} targets checked, "
        f"{counts['ERROR']} error(s), {counts['WARNING']} warning(s)"
    )
    if checks.reason:
        line += f" — reason: {safe(checks.reason)}"
    return line


def render_checks(console: Console, checks: Checks, show_attempts: bool = True, compact: bool = False) -> None:
    """The readable report of a plan's checks: one table per target, its summary line, the verdict."""
    for group in group_results(checks.results):
        console.print(
            f"[bold]{safe(group.target)}[/]  {group.count('ERROR')} error(s), {group.count('WARNING')} warning(s)"
        )
        console.print(target_table(group, compact))
        for summary in group.summaries:
            style = LEVEL_STYLE.get(str(summary.get("status")), "")
            console.print(Text.assemble("  ", ("summary", "bold"), " ", (plain(summary_text(summary)), style)))
        console.print()
    if show_attempts and checks.attempts:
        console.print(attempts_table(checks.attempts))
    console.print(status_line(checks))


# -- progress while waiting -----------------------------------------------------------------------
class WaitProgress:
    """Shows a wait's progress: a live rich status on a terminal, a plain line per change otherwise."""

    def __init__(self, console: Console, plan_id: int) -> None:
        self.console = console
        self.plan_id = plan_id
        self.started = time.monotonic()
        self._last: tuple[str, int, int | None] | None = None
        self._status = console.status(f"plan {plan_id}: waiting…") if console.is_terminal else None

    def __enter__(self) -> WaitProgress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, checks: Checks) -> None:
        elapsed = time.monotonic() - self.started
        progress = progress_text(checks.status, checks.targets_done, checks.targets_total, elapsed)
        text = f"plan {self.plan_id}: {progress}"
        if self._status is not None:
            self._status.update(safe(text))
            return
        state = (checks.status, checks.targets_done, checks.targets_total)
        if state != self._last:
            self._last = state
            self.console.print(text, markup=False, highlight=False)
