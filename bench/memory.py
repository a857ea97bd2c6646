"""6. Memory: worker RSS after 1,000 and after 10,000 runs (--quick: 500 and 2,000).

One `celery worker` (prefork, -c nproc) and one beat. Runs are fed as backlogs (N plans with an
AVAILABLE run each, one target, one-statement SQL) followed by one claim (`Plancheck._dispatch_claim`,
for the worker's free slots; every finishing run claims the next), until the total
number of DONE runs reaches each checkpoint. RSS = VmRSS from /proc/PID/status of the worker's main
process plus every pool child, read 2 s after the checkpoint is reached (the trailing relay and the
beat's tasks are done by then). The first checkpoint (100 runs) is the warmed-up baseline.
"""

from __future__ import annotations

import os
import time

from bench.common import Servers, cluster, deployment, emit, progress, table, wait_for, wait_ready, worker_rss_kib


def run(servers: Servers, quick: bool) -> None:
    checkpoints = [100, 500, 2000] if quick else [100, 1000, 10000]
    concurrency = len(os.sched_getaffinity(0))
    rows = []
    with deployment(servers, "mem") as dep:
        servers.flush_redis()
        with cluster(dep.env()) as running:
            worker = running.worker("w1", concurrency)
            running.beat()
            wait_ready([worker])
            dep.wait_for_slots(concurrency, running.processes)
            api = dep.api()
            done = 0
            base = None
            for checkpoint in checkpoints:
                progress(f"memory: running to {checkpoint:,} runs")
                dep.insert_backlog(checkpoint - done)
                t0 = time.monotonic()
                api._dispatch_claim()
                finished = wait_for(
                    lambda c=checkpoint: dep.count_status("DONE") >= c,
                    timeout=1800,
                    interval=0.1,
                    what=f"{checkpoint} runs DONE",
                    alive=running.processes,
                )
                seconds = finished - t0
                rate = (checkpoint - done) / seconds
                done = checkpoint
                time.sleep(2.0)
                main, kids, count = worker_rss_kib(worker.pid)
                total = main + kids
                base = base or total
                rows.append(
                    [
                        checkpoint,
                        rate,
                        main / 1024,
                        kids / 1024,
                        count,
                        total / 1024,
                        (total - base) / 1024,
                        (total - base) / base * 100,
                    ]
                )
        counts = dep.status_counts()
        servers.flush_redis()
    if counts.get("DONE") != checkpoints[-1]:
        raise RuntimeError(f"expected {checkpoints[-1]} DONE runs, got {counts}")
    growth = rows[-1][6]
    emit(
        table(
            f"memory: celery worker RSS (-P prefork -c {concurrency}), MiB",
            ["runs done", "runs/s", "main", "children", "n", "total", "vs first", "growth %"],
            rows,
            [
                f"growth from {checkpoints[0]:,} to {checkpoints[-1]:,} runs: {growth:+.1f} MiB "
                f"({rows[-1][7]:+.1f} %); runs/s = rate of that segment (backlog drained by one claim)"
            ],
        )
    )
