"""Fixtures shared by integration tests beyond the servers of tests/conftest.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url


@pytest.fixture(scope="session")
def password_server() -> Iterator[str]:
    """A private embedded server that demands passwords (the shared test server may trust everyone).

    Returns its socket directory: `postgres` is trusted there, every other role must give its password
    (scram-sha-256). Its directory is not under pytest's basetemp, which concurrent pytest runs of the
    same user prune.
    """
    import pgserver

    home = Path(tempfile.mkdtemp(prefix="plancheck-pgauth-"))
    server = pgserver.get_server(str(home / "data"), cleanup_mode="delete")
    Path(server.pgdata, "pg_hba.conf").write_text("local all postgres trust\nlocal all all scram-sha-256\n")
    server.psql("SELECT pg_reload_conf();")
    yield str(make_url(server.get_uri()).query["host"])
    server.cleanup()
    shutil.rmtree(home, ignore_errors=True)
