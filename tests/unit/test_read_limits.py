"""SQL files are read up to their limit plus one byte: a huge file or /dev/zero is refused, never loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from plancheck.cli.common import CliError, read_bytes
from plancheck.cli.main import run


def test_a_file_over_the_limit_is_refused_after_limit_plus_one_bytes(tmp_path: Path) -> None:
    path = tmp_path / "plan.sql"
    path.write_bytes(b"x" * 11)
    assert read_bytes(path, "SQL file", 11) == b"x" * 11
    with pytest.raises(CliError, match=r"SQL file '.*plan.sql' is larger than the limit of 10 bytes"):
        read_bytes(path, "SQL file", 10)


def test_an_endless_file_is_refused() -> None:
    with pytest.raises(CliError, match="larger than the limit of 1,048,576 bytes"):
        read_bytes(Path("/dev/zero"), "SQL file", 1024 * 1024)


def test_plan_create_refuses_dev_zero_before_it_needs_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    """It was OOM-killed at 23 GB: the file is refused after 16 MiB + 1 byte, before any connection."""
    code = run(["plan", "create", "shop", "--sql", "/dev/zero", "--target", "pg/db"])
    assert code == 3
    assert capsys.readouterr().err.strip() == "error: SQL file '/dev/zero' is larger than the limit of 16,777,216 bytes"


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not found"):
        read_bytes(tmp_path / "nope.sql", "SQL file", 10)
    with pytest.raises(CliError, match="is a directory"):
        read_bytes(tmp_path, "SQL file", 10)
