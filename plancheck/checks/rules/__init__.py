"""The SQL review rules of the STATEMENT_ADVISE check: one module per rule, each defining ``RULE``.

Codes are stable: 2xx statement, 3xx naming, 4xx column, 6xx table, 8xx index, 9xx schema
(201 is the syntax error reported by the advisor itself). Helper modules (base, lexer, script)
define no ``RULE`` and are skipped.
"""

from __future__ import annotations

import importlib
import pkgutil

from plancheck.checks.rules.base import Rule


def _discover() -> tuple[Rule, ...]:
    rules = []
    for module in pkgutil.iter_modules(__path__):
        rule = getattr(importlib.import_module(f"{__name__}.{module.name}"), "RULE", None)
        if isinstance(rule, Rule):
            rules.append(rule)
    return tuple(sorted(rules, key=lambda rule: rule.code))


ALL_RULES: tuple[Rule, ...] = _discover()
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in ALL_RULES}
