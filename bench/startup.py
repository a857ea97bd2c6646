"""9. Start-up: how long a CLI command takes from exec to exit, and what it spends importing.

Commands, each run as a new `plancheck` process (the venv's console script) from an empty directory
outside the checkout, ROUNDS times in alternation: `plancheck --help`; `plancheck plan checks ID
--json` on a DONE plan of a running deployment (one worker, one beat); `plancheck review FILE` on a
one-statement file. Bytecode is cached, as after an install (one warm-up run each). Wall = from the
spawn to the exit, median of the rounds. Then each command once
more per round under `python -X importtime`: the time spent importing, summed per top-level package
(the `self` column of every module of it), median of the rounds.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.common import Servers, cluster, deployment, emit, progress, table, wait_for, wait_ready

ROUNDS = 5
GOALS = {"--help": 0.25, "plan checks ID --json": 0.5}
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \|\s+(\S.*)$")


def run(servers: Servers, quick: bool) -> None:
    with deployment(servers, "startup") as dep, tempfile.TemporaryDirectory(prefix="plancheck-startup-") as empty:
        # As installed: bytecode is cached (pip compiles a wheel's on install; a warm-up round writes an
        # editable install's), so PYTHONDONTWRITEBYTECODE is dropped.
        env = {key: value for key, value in dep.env().items() if key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
        plan_id = _done_plan(dep)
        review_file = Path(empty) / "migration.sql"
        review_file.write_text("ALTER TABLE items ADD COLUMN note text;\n")
        commands = {
            "--help": ["--help"],
            "plan checks ID --json": ["plan", "checks", str(plan_id), "--json"],
            "review FILE": ["review", str(review_file)],
        }
        for args in commands.values():
            _wall(args, env, empty)  # warm-up: bytecode and the OS's file cache
        walls: dict[str, list[float]] = defaultdict(list)
        imports: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for round_ in range(ROUNDS):
            progress(f"startup: round {round_ + 1} of {ROUNDS}")
            for name, args in commands.items():
                walls[name].append(_wall(args, env, empty))
                for package, seconds in _import_seconds(args, env, empty).items():
                    imports[name][package].append(seconds)
    emit(_wall_table(walls))
    emit(_import_table(imports))


def _done_plan(dep) -> int:  # type: ignore[no-untyped-def]
    """A plan whose checks are DONE, for `plan checks` to read."""
    with cluster(dep.env()) as running:
        worker = running.worker("w1", 1)
        running.beat()
        wait_ready([worker])
        dep.wait_for_slots(1, running.processes)
        api = dep.api()
        plan_id = api.create_plan(dep.project, "ALTER TABLE items ADD COLUMN note text;\n", targets=dep.targets[:1])
        wait_for(lambda: api.checks(plan_id).finished, timeout=120, what="the plan checked", alive=running.processes)
        return int(plan_id)


def _console_script() -> str:
    return str(Path(sys.executable).with_name("plancheck"))


def _wall(args: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run([_console_script(), *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def _import_seconds(args: list[str], env: dict[str, str], cwd: str) -> dict[str, float]:
    """Seconds of import per top-level package (each module's own time, summed) for one run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "plancheck.cli.main", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            totals[match.group(2).strip().split(".")[0]] += int(match.group(1)) / 1e6
    return totals


def _wall_table(walls: dict[str, list[float]]) -> str:
    rows = []
    for name, seconds in walls.items():
        goal = GOALS.get(name)
        median = statistics.median(seconds)
        verdict = "" if goal is None else ("met" if median <= goal else "NOT met")
        rows.append([f"plancheck {name}", median * 1000, min(seconds) * 1000, max(seconds) * 1000, goal or "", verdict])
    return table(
        f"startup: wall time of a CLI command, ms (median of {ROUNDS} fresh processes)",
        ["command", "median", "min", "max", "goal s", "goal"],
        rows,
        [f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; spawn to exit, run outside the checkout"],
    )


def _import_table(imports: dict[str, dict[str, list[float]]], top: int = 8) -> str:
    rows = []
    for name, packages in imports.items():
        medians = sorted(((statistics.median(s), p) for p, s in packages.items()), reverse=True)
        total = sum(seconds for seconds, _ in medians)
        listed = ", ".join(f"{package} {seconds * 1000:.0f}" for seconds, package in medians[:top])
        rows.append([f"plancheck {name}", total * 1000, listed])
    return table(
        f"startup: import time per top-level package, ms (median of {ROUNDS}; -X importtime self times)",
        ["command", "imports", f"largest {top}"],
        rows,
        ["'encodings', 'site' and the like are the interpreter's own start-up"],
    )
