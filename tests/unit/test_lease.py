"""Lease.interruptible(): a lost lease interrupts the block, and leaving the block leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from plancheck.scheduler.lease import Interrupted, Lease


def _lease() -> Lease:
    # Never beats in these tests: the engine and renew callback are not used.
    return Lease(None, lambda conn: True, 60.0, lambda: None)  # type: ignore[arg-type]


def test_a_lost_lease_interrupts_pure_python_work() -> None:
    lease = _lease()
    threading.Timer(0.2, lease.mark_lost).start()
    with pytest.raises(Interrupted), lease.interruptible():
        while True:  # CPU-bound, no I/O to cancel: only the async exception can end it
            sum(range(100))


def test_a_lease_lost_before_the_block_refuses_to_enter_it() -> None:
    lease = _lease()
    lease.mark_lost()
    entered = False
    with pytest.raises(Interrupted), lease.interruptible():
        entered = True
    assert not entered


def test_a_lease_lost_after_the_block_raises_nothing_later() -> None:
    lease = _lease()
    with lease.interruptible():
        pass
    lease.mark_lost()
    time.sleep(0.05)
    assert sum(range(10)) == 45  # no Interrupted arrives in this thread once the block is left


PROFILED = """
import cProfile
from plancheck.scheduler.lease import Lease

def work():
    lease = Lease(None, lambda conn: True, 60.0, lambda: None)
    with lease.interruptible():
        total = sum(range(10))
    return total + len(str(total))

profiler = cProfile.Profile()
profiler.enable()
results = [work(), work()]
profiler.disable()
print(results)
"""


def test_a_block_left_with_its_lease_alive_keeps_a_profiler_working() -> None:
    # Python 3.11 hung the next profiled call when a withdrawal was made with nothing pending, which
    # would freeze a worker run under cProfile, coverage or a debugger. The timeout catches a hang.
    done = subprocess.run([sys.executable, "-c", PROFILED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[47, 47]"
