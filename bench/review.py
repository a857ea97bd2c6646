"""5. Review speed: statements per second of plancheck's SQL review against squawk on the same files.

The corpus is bench/corpus.py's (deterministic seed), written as migration files to a temporary
directory. plancheck: `plancheck.checks.advise.review(sql, target, ReviewConfig())` per file, in
this process, no target and no row estimator (every pass parses every file), inside `advise.batch()`
as `plancheck review FILE...` runs it (a row shows each file reviewed on its own); squawk: one
`squawk FILE...` process over every file (its output read and discarded, its exit code ignored: it
exits 1 when it finds issues).

The two alternate, ROUNDS times, so load from anything else on the machine hits both alike; the best
round of each is compared, by wall time and by CPU time (plancheck's process time, squawk's from
the kernel's accounting of the child). Another row reviews each file a second time right after the
first, with its parse shared as check_target shares it: what the second and later targets of a
fan-out plan cost.

The breakdown times plancheck's own pieces the way `review` calls them (parse_script, then each
rule's check on a RuleContext), to show where the review's time goes.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Servers, emit, progress, table
from bench.corpus import Corpus, write_corpus

ROUNDS = 7


@contextmanager
def _corpus() -> Iterator[tuple[str, Corpus]]:
    """The corpus written to a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="pcb-corpus-") as directory:
        yield directory, write_corpus(Path(directory))


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def _best(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall for t in timings), min(t.cpu for t in timings))


def _review_pass(texts: list[str], one_by_one: bool = False) -> tuple[Timing, int]:
    """Every file reviewed as `plancheck review FILE…` does (advise.batch), or each on its own."""
    from plancheck.checks import advise

    config = advise.ReviewConfig()
    findings = 0
    wall, cpu = time.perf_counter(), time.process_time()
    with nullcontext() if one_by_one else advise.batch():
        for sql in texts:
            findings += sum(1 for result in advise.review(sql, "bench/corpus", config) if result.title != "OK")
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), findings


def _fan_out_pass(texts: list[str]) -> Timing:
    """Each file reviewed for a second target right after a first: the second review, timed, finds the
    file's parse in the per-process cache, as the second and later targets of a fan-out plan do."""
    from plancheck.checks import advise

    config = advise.ReviewConfig()
    advise.PARSES.clear()
    wall = cpu = 0.0
    for sql in texts:
        advise.review(sql, "bench/first-target", config, parsed=advise.shared_parse(sql))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        advise.review(sql, "bench/next-target", config, parsed=advise.shared_parse(sql))
        wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
    return Timing(wall, cpu)


def _squawk_pass(squawk: str, names: list[str], directory: str) -> tuple[Timing, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run([squawk, *names], cwd=directory, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    summary = [line for line in done.stdout.splitlines() if line.startswith("Found ")]
    return Timing(wall, cpu), summary[-1] if summary else f"exit {done.returncode}"


def _breakdown(texts: list[str]) -> list[tuple[str, float]]:
    from plancheck.checks.advise import ReviewConfig, batch
    from plancheck.checks.rules.base import RuleContext
    from plancheck.checks.rules.script import parse_script

    config = ReviewConfig()
    spent: dict[str, float] = defaultdict(float)
    with batch():
        for sql in texts:
            t0 = time.process_time()
            script = parse_script(sql)
            spent["parse_script (pglast + indexing)"] += time.process_time() - t0
            for rule, _, options in config.active:
                t0 = time.process_time()
                list(rule.check(RuleContext(script, options)))
                spent[f"rule {rule.name}"] += time.process_time() - t0
    return sorted(spent.items(), key=lambda item: -item[1])


def _parse_pieces(texts: list[str]) -> list[tuple[str, float]]:
    """parse_script's own pieces (best of 3, CPU time), from plancheck.checks.rules.script's internals.

    Internals may change: a piece that cannot be timed any more is left out.
    """
    import pglast

    from plancheck.checks.rules import script

    def best(function: Callable[[], Any]) -> float:
        times = []
        for _ in range(3):
            t0 = time.process_time()
            function()
            times.append(time.process_time() - t0)
        return min(times)

    pieces: list[tuple[str, float]] = [
        (
            "    for scale: pglast.parse_sql as pglast runs it (checks every attribute)",
            best(lambda: [pglast.parse_sql(t) for t in texts]),
        ),
        (
            "    for scale: parse_sql_json (libpg_query alone)",
            best(lambda: [pglast.parser.parse_sql_json(t) for t in texts]),
        ),
    ]
    try:
        with script.plain_node_building():
            plain = best(lambda: [pglast.parse_sql(t) for t in texts])
        pieces.insert(0, ("  pglast.parse_sql, attributes assigned plainly", plain))
        pieces.append(
            (
                "  parser thread if over 2 KiB (no-op in it)",
                best(lambda: [script.on_parser_stack(len, t) for t in texts]),
            )
        )
        parsed = [script._parse(t) for t in texts]
        pieces.append(
            (
                "  collect (every node of every statement)",
                best(lambda: [script.collect(p.node) for ps in parsed for p in ps]),
            )
        )
    except AttributeError:
        pass
    return pieces


def run(servers: Servers, quick: bool) -> None:
    del servers, quick  # no servers needed; the corpus is the same size in --quick (it takes seconds)
    squawk = shutil.which("squawk")
    with _corpus() as (directory, corpus):
        texts = [path.read_text() for path in corpus.files]
        names = [path.name for path in corpus.files]
        statements = corpus.statements
        progress(f"review: {len(corpus.files)} files, {statements} statements, {ROUNDS} alternating rounds")

        first, findings = _review_pass(texts)
        ours: list[Timing] = []
        theirs: list[Timing] = []
        squawk_issues = "?"
        for _ in range(ROUNDS):
            ours.append(_review_pass(texts)[0])
            if squawk:
                timing, squawk_issues = _squawk_pass(squawk, names, directory)
                theirs.append(timing)
        cached = _best([_fan_out_pass(texts) for _ in range(ROUNDS)])
        alone = _best([_review_pass(texts, one_by_one=True)[0] for _ in range(ROUNDS)])
        startup = None
        if squawk:
            Path(directory, "one.sql").write_text("SELECT 1;\n")
            startup = _best([_squawk_pass(squawk, ["one.sql"], directory)[0] for _ in range(3)])
            version = subprocess.run([squawk, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        breakdown = _breakdown(texts)
        parse_pieces = _parse_pieces(texts)

    best = _best(ours)

    def row(name: str, count: int, timing: Timing, found: str = "") -> list[Any]:
        return [name, count, timing.wall, count / timing.wall, timing.cpu, count / timing.cpu, found]

    rows = [
        row(f"plancheck review FILE... (best of {ROUNDS})", statements, best, f"{findings} findings"),
        row("plancheck review (first pass)", statements, first),
        row("plancheck, each file reviewed on its own", statements, alone),
        row("plancheck, same files for a next target (fan-out)", statements, cached),
    ]
    notes = [
        f"corpus: {len(texts)} migration files from bench/corpus.py (seed 20240607), {statements} statements, "
        f"{sum(len(t) for t in texts) / 1024:.0f} KiB; plancheck and squawk alternate, {ROUNDS} rounds"
    ]
    if theirs and startup is not None:
        squawk_best = _best(theirs)
        rows.append(row(f"{version} (process, best of {ROUNDS})", statements, squawk_best, squawk_issues))
        rows.append(row("squawk on one 1-statement file (start-up)", 1, startup))
        notes.append(
            f"plancheck / squawk, statements per second: {squawk_best.wall / best.wall:.2f} by wall time, "
            f"{squawk_best.cpu / best.cpu:.2f} by CPU time (squawk's process start-up included)"
        )
    else:
        notes.append("squawk NOT MEASURED: no `squawk` on PATH (pip install -e '.[bench]')")
    emit(
        table(
            "review: statements reviewed per second, same files, same run",
            ["reviewer", "statements", "wall s", "statements/s", "CPU s", "statements/CPU s", "found"],
            rows,
            notes,
        )
    )

    total = sum(seconds for _, seconds in breakdown)
    rows = [
        [name, seconds * 1000, seconds / total * 100, seconds / statements * 1e6] for name, seconds in breakdown[:12]
    ]
    for name, seconds in reversed(parse_pieces):
        rows.insert(1, [name, seconds * 1000, seconds / total * 100, seconds / statements * 1e6])
    rest = breakdown[12:]
    rows.append(
        [
            f"{len(rest)} other rules",
            sum(s for _, s in rest) * 1000,
            sum(s for _, s in rest) / total * 100,
            sum(s for _, s in rest) / statements * 1e6,
        ]
    )
    emit(
        table(
            "review: where plancheck's review time goes (one pass over the corpus, CPU time)",
            ["piece", "ms", "%", "us/statement"],
            rows,
            [
                "indented rows: pieces of parse_script timed alone (best of 3), so they need not add up exactly;",
                "'for scale' rows are not part of plancheck's review: they show what pglast's own checked "
                "build and the C parser alone cost",
            ],
        )
    )
