"""Review results as CI tools read them: GitHub workflow annotations and SARIF 2.1.0, plus the plain
one-line-per-finding text of `plancheck review`.

The input is what every check produces, `CheckResult.to_json()` dicts, each with the file it is
about (`plancheck review`) or without one (`plan checks`, whose results name a target instead).
Pure functions: no I/O, no API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from plancheck.checks.advise import SYNTAX_ERROR_CODE, TOO_LARGE_CODE
from plancheck.checks.rules import ALL_RULES, RULES_BY_NAME

FORMATS = ("text", "json", "github", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SUMMARY_TYPE = "STATEMENT_SUMMARY_REPORT"
# Findings that are no rule's: the advisor's own and target trouble.
_OWN_IDS = {SYNTAX_ERROR_CODE: "syntax-error", TOO_LARGE_CODE: "script-too-large"}
_LEVELS = {"ERROR": "error", "WARNING": "warning"}
# C0 and C1 control characters (ESC starts terminal escape sequences), DEL, and the bidirectional
# overrides that make text display in another order than it is.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Located:
    """One result and the file it is about (None: the SQL did not come from a file we know)."""

    result: Mapping[str, Any]
    path: str | None = None

    @property
    def level(self) -> str:
        return str(self.result.get("status", ""))

    @property
    def is_finding(self) -> bool:
        return self.level in _LEVELS and self.result.get("type") != SUMMARY_TYPE

    @property
    def rule_id(self) -> str:
        title = str(self.result.get("title", ""))
        if title in RULES_BY_NAME:
            return title
        return _OWN_IDS.get(int(self.result.get("code") or 0), "target-error")

    @property
    def line(self) -> int:
        return int((self.result.get("position") or {}).get("line") or 1)

    @property
    def column(self) -> int:
        return int((self.result.get("position") or {}).get("column") or 1)

    @property
    def message(self) -> str:
        content = str(self.result.get("content", ""))
        target = self.result.get("target")
        return f"{content} (target {target})" if target and self.path is None else content


def findings(located: Iterable[Located]) -> list[Located]:
    """The ERROR and WARNING results, in a stable order: file, line, column, rule."""
    return sorted(
        (item for item in located if item.is_finding),
        key=lambda item: (item.path or "", item.line, item.column, item.rule_id),
    )


def counts(located: Iterable[Located]) -> dict[str, int]:
    found = findings(located)
    return {level: sum(1 for item in found if item.level == level) for level in _LEVELS}


# -- text -----------------------------------------------------------------------------------------
def printable(text: str) -> str:
    """text with control characters shown as escapes, so SQL from a file cannot drive the terminal."""
    return _UNPRINTABLE.sub(
        lambda match: f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100 else f"\\u{ord(match.group()):04x}",
        text,
    )


def text_lines(located: Sequence[Located]) -> list[str]:
    """`file:line:col: LEVEL rule (code): message`, one per finding, and a closing summary line."""
    lines = []
    for item in findings(located):
        where = f"{item.path}:{item.line}:{item.column}" if item.path else f"{item.line}:{item.column}"
        code = item.result.get("code")
        lines.append(printable(f"{where}: {item.level} {item.rule_id}{f' ({code})' if code else ''}: {item.message}"))
    total = counts(located)
    lines.append(f"{total['ERROR']} error(s), {total['WARNING']} warning(s)")
    return lines


# -- GitHub workflow commands ---------------------------------------------------------------------
def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def github_lines(located: Sequence[Located]) -> list[str]:
    """One `::error` or `::warning` workflow command per finding, escaped as GitHub's runner expects."""
    lines = []
    for item in findings(located):
        properties = [] if item.path is None else [f"file={_github_property(item.path)}"]
        properties += [f"line={item.line}", f"col={item.column}", f"title={_github_property(item.rule_id)}"]
        lines.append(f"::{_LEVELS[item.level]} {','.join(properties)}::{_github_data(item.message)}")
    return lines


# -- SARIF 2.1.0 ----------------------------------------------------------------------------------
def sarif(located: Sequence[Located], version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: every rule in the driver, one result per finding."""
    rule_index = {rule.name: index for index, rule in enumerate(ALL_RULES)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "plancheck",
                        "version": version,
                        "rules": [_sarif_rule(rule) for rule in ALL_RULES],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [_sarif_result(item, rule_index) for item in findings(located)],
            }
        ],
    }


def _sarif_rule(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.name,
        "name": rule.name,
        "shortDescription": {"text": rule.what},
        "fullDescription": {"text": rule.why},
        "help": {"text": rule.fix},
        "defaultConfiguration": {"level": _LEVELS[str(rule.default_level)]},
        "properties": {"code": rule.code},
    }


def _uri(path: str) -> str:
    """A file path as a URI reference: file:// for an absolute path, percent-encoded relative otherwise."""
    return PurePosixPath(path).as_uri() if path.startswith("/") else quote(path)


def _sarif_result(item: Located, rule_index: Mapping[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {"ruleId": item.rule_id, "level": _LEVELS[item.level], "message": {"text": item.message}}
    if item.rule_id in rule_index:
        result["ruleIndex"] = rule_index[item.rule_id]
    if item.path is not None:  # a physical location needs an artifact: plan checks without a file have none
        result["locations"] = [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(item.path)},
                    "region": {"startLine": item.line, "startColumn": item.column},
                }
            }
        ]
    if item.result.get("target"):
        result["properties"] = {"target": item.result["target"]}
    return result


def machine_text(output_format: str, located: Sequence[Located], version: str) -> str:
    """The github or sarif rendering of located results, ready to print."""
    if output_format == "github":
        return "".join(line + "\n" for line in github_lines(located))
    if output_format == "sarif":
        return json.dumps(sarif(located, version), indent=2) + "\n"
    raise ValueError(f"not a machine format: {output_format!r}")
