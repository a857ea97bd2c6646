"""Run the plancheck benchmarks: `python -m bench [--quick] [--only NAME,...]` or `python bench/run.py`.

Each benchmark prints its tables to stdout (progress goes to stderr). Ratios are always between
numbers measured in the same run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: import from the repository root, not from bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

BENCHMARKS = ["overhead", "latency", "history", "fanout", "review", "memory", "profile", "capacity", "startup"]
MODULES = {"profile": "runprofile"}  # bench/profile.py would shadow the standard library's profile


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, data: str) -> int:
        for stream in self.streams:
            stream.write(data)
        return len(data)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes: the whole suite in about 4 minutes on 2 cores"
    )
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    skip = [name for name in args.skip.split(",") if name]
    unknown = [name for name in only + skip if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    selected = [name for name in (only or BENCHMARKS) if name not in skip]

    from bench.common import emit, machine, resolve_servers, table

    if args.output:
        sys.stdout = _Tee(sys.stdout, args.output.open("w"))

    servers = resolve_servers()
    # Anything in this process that reads plancheck's settings (celeryconfig, the API) gets the
    # bench's broker: never the default Redis database 0.
    os.environ["PLANCHECK_BROKER_URL"] = servers.redis_url
    os.environ["PLANCHECK_DATABASE_URL"] = servers.admin_url
    failed: list[str] = []
    durations: list[list[object]] = []
    try:
        info = machine()
        pg, rd = servers.versions()
        emit(
            table(
                "machine",
                ["nproc", "memory", "cpu", "python", "servers"],
                [[info["nproc"], info["memory"], info["cpu"], info["python"], f"{pg}, {rd}"]],
                [f"from: {servers.source}", f"mode: {'--quick' if args.quick else 'full'}"],
            )
        )
        for name in selected:
            module = importlib.import_module(f"bench.{MODULES.get(name, name)}")
            started, load_before = time.monotonic(), _loadavg()
            try:
                module.run(servers, args.quick)
                status = "ok"
            except Exception:
                traceback.print_exc()
                failed.append(name)
                status = "FAILED"
            durations.append([name, status, time.monotonic() - started, load_before, _loadavg()])
        emit(
            table(
                "bench wall time",
                ["benchmark", "status", "seconds", "load avg before", "load avg after"],
                durations,
                [
                    "load avg = 1-minute load average from /proc/loadavg: anything else running on "
                    "the machine shows here"
                ],
            )
        )
    finally:
        servers.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
