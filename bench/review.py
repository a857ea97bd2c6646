"""5. Review speed: statements per second of plancheck's SQL review against squawk on the same files.

The corpus is bench/corpus.py's (deterministic seed), written as migration files to a temporary
directory. plancheck: `plancheck.checks.advise.review(sql, target, ReviewConfig())` per file, in
this process, no target and no row estimator; squawk: one `squawk FILE...` process over every file
(wall time of the process, its output read and discarded, its exit code ignored: it exits 1 when it
finds issues). Both are run three times, the median is reported; plancheck's first pass (imports
done, caches cold) is reported too.

The breakdown times plancheck's own pieces the way `review` calls them (parse_script, then each
rule's check on a RuleContext), to show where the review's time goes.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import Servers, emit, progress, table
from bench.corpus import write_corpus


def _squawk() -> str | None:
    return shutil.which("squawk")


def _review_pass(texts: list[str]) -> tuple[float, int]:
    from plancheck.checks.advise import ReviewConfig, review

    config = ReviewConfig()
    findings = 0
    t0 = time.perf_counter()
    for sql in texts:
        findings += sum(1 for result in review(sql, "bench/corpus", config) if result.title != "OK")
    return time.perf_counter() - t0, findings


def _breakdown(texts: list[str]) -> list[tuple[str, float]]:
    from plancheck.checks.advise import ReviewConfig
    from plancheck.checks.rules import ALL_RULES
    from plancheck.checks.rules.base import Level, RuleContext
    from plancheck.checks.rules.script import parse_script

    config = ReviewConfig()
    spent: dict[str, float] = defaultdict(float)
    for sql in texts:
        t0 = time.perf_counter()
        script = parse_script(sql)
        spent["parse_script (pglast + indexing)"] += time.perf_counter() - t0
        for rule in ALL_RULES:
            if config.level(rule) is Level.DISABLED:
                continue
            t0 = time.perf_counter()
            ctx = RuleContext(script, config.options_for(rule), None)
            list(rule.check(ctx))
            spent[f"rule {rule.name}"] += time.perf_counter() - t0
    return sorted(spent.items(), key=lambda item: -item[1])


def _parse_pieces(texts: list[str]) -> list[tuple[str, float]]:
    """parse_script's own pieces (best of 3), from plancheck.checks.rules.script's internals.

    Internals may change: a piece that cannot be timed any more is left out.
    """
    import pglast

    from plancheck.checks.rules import script

    def best(function: Any) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            function()
            times.append(time.perf_counter() - t0)
        return min(times)

    pieces: list[tuple[str, float]] = [
        ("  pglast.parse_sql (libpg_query + Python AST)", best(lambda: [pglast.parse_sql(t) for t in texts])),
        ("    for scale: parse_sql_json (libpg_query alone)",
         best(lambda: [pglast.parser.parse_sql_json(t) for t in texts])),
        ("    for scale: split with the C scanner only",
         best(lambda: [pglast.parser.split(t, with_parser=False) for t in texts])),
    ]
    try:
        pieces.append(("  parser thread if over 2 KiB (no-op in it)",
                       best(lambda: [script.on_parser_stack(len, t) for t in texts])))
        parsed = [script._parse(t) for t in texts]
        pieces.append(("  collect (every node of every statement)",
                       best(lambda: [script.collect(p.node) for ps in parsed for p in ps])))
    except AttributeError:
        pass
    return pieces


def run(servers: Servers, quick: bool) -> None:
    del servers, quick  # no servers needed; the corpus is the same size in --quick (it takes seconds)
    squawk = _squawk()
    with tempfile.TemporaryDirectory(prefix="pcb-corpus-") as directory:
        corpus = write_corpus(Path(directory))
        texts = [path.read_text() for path in corpus.files]
        names = [path.name for path in corpus.files]
        statements = corpus.statements
        progress(f"review: {len(corpus.files)} files, {statements} statements")

        cold, findings = _review_pass(texts)
        passes = [_review_pass(texts)[0] for _ in range(3)]
        plancheck_seconds = statistics.median(passes)

        squawk_runs: list[float] = []
        squawk_issues = "?"
        startup: list[float] = []
        if squawk:
            for _ in range(3):
                t0 = time.perf_counter()
                done = subprocess.run([squawk, *names], cwd=directory, capture_output=True, text=True, check=False)
                squawk_runs.append(time.perf_counter() - t0)
            summary = [line for line in done.stdout.splitlines() if line.startswith("Found ")]
            squawk_issues = summary[-1] if summary else f"exit {done.returncode}"
            Path(directory, "one.sql").write_text("SELECT 1;\n")
            for _ in range(3):
                t0 = time.perf_counter()
                subprocess.run([squawk, "one.sql"], cwd=directory, capture_output=True, check=False)
                startup.append(time.perf_counter() - t0)
        breakdown = _breakdown(texts)
        parse_pieces = _parse_pieces(texts)

    plancheck_rate = statements / plancheck_seconds
    rows = [
        ["plancheck review (warm, median of 3)", statements, plancheck_seconds, plancheck_rate, 1.0,
         f"{findings} findings"],
        ["plancheck review (first pass)", statements, cold, statements / cold, (statements / cold) / plancheck_rate,
         ""],
    ]
    notes = [f"corpus: {len(texts)} migration files from bench/corpus.py (seed 20240607), {statements} statements, "
             f"{sum(len(t) for t in texts) / 1024:.0f} KiB"]
    if squawk_runs:
        squawk_seconds = statistics.median(squawk_runs)
        squawk_rate = statements / squawk_seconds
        version = subprocess.run([squawk, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        rows.append([f"{version} (process wall, median of 3)", statements, squawk_seconds, squawk_rate,
                     squawk_rate / plancheck_rate, squawk_issues])
        rows.append(["squawk on one 1-statement file (start-up)", 1, statistics.median(startup), "", "", ""])
        notes.append(f"plancheck / squawk = {plancheck_rate / squawk_rate:.2f} "
                     f"(squawk is {squawk_rate / plancheck_rate:.1f}x faster, its process start-up included)")
    else:
        notes.append("squawk NOT MEASURED: no `squawk` on PATH (pip install -e '.[bench]')")
    emit(table("review: statements reviewed per second, same files, same run",
               ["reviewer", "statements", "seconds", "statements/s", "rate vs plancheck", "found"], rows, notes))

    total = sum(seconds for _, seconds in breakdown)
    rows = [[name, seconds * 1000, seconds / total * 100, seconds / statements * 1e6]
            for name, seconds in breakdown[:12]]
    for name, seconds in reversed(parse_pieces):
        rows.insert(1, [name, seconds * 1000, seconds / total * 100, seconds / statements * 1e6])
    rest = breakdown[12:]
    rows.append([f"{len(rest)} other rules", sum(s for _, s in rest) * 1000, sum(s for _, s in rest) / total * 100,
                 sum(s for _, s in rest) / statements * 1e6])
    emit(table("review: where plancheck's review time goes (one pass over the corpus)",
               ["piece", "ms", "%", "us/statement"], rows,
               ["indented rows: pieces of parse_script timed alone (best of 3), so they need not add up exactly;",
                "'for scale' rows are not part of plancheck's review: "
                "they show what the C parser and scanner cost alone"]))
