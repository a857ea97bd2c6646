"""How far one check may go on a target and in the parser: the check's side of the PLANCHECK_TARGET_*
and PLANCHECK_REVIEW_MAX_BYTES settings.

The worker passes the configured values (`plancheck.domain.targets.check_limits`); the defaults
here are those of the settings, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
MAX_LABELS = 64  # labels per database: what a group expression's macro over resource.labels may iterate


@dataclass(frozen=True)
class CheckLimits:
    review_max_bytes: int = 2 * MIB  # of SQL, not counting comments and whitespace
    statement_timeout_ms: int = 5_000
    lock_timeout_ms: int = 1_000
    connect_timeout_s: int = 5
    idle_in_transaction_ms: int = 60_000
    idle_connections: int = 4  # per process, kept for the next check of the same target
    idle_seconds: float = 30.0


DEFAULT_LIMITS = CheckLimits()
