"""Shared pieces of the CLI commands: the API handle, the consoles, options, and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from plancheck.cli import render

if TYPE_CHECKING:
    from plancheck.api import Plancheck
    from plancheck.api.plans import PlansApi
    from plancheck.api.remote import HttpClient

# Exit code of a command that could not run: bad usage, bad input, unknown id, unreachable database.
EXIT_USAGE = 3
MAX_SETTINGS_BYTES = 1024 * 1024


def _console(stderr: bool = False) -> Console:
    """A console; off a terminal (CI logs, pipes) tables get 120 columns unless COLUMNS says otherwise."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = 120
    return console


stdout = _console()
stderr = _console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


class CliError(Exception):
    """A command's own one-line error (bad file, bad option value)."""


def api() -> Plancheck:
    """The Python API with settings from the environment (a bad setting is a one-line error)."""
    from plancheck.api import Plancheck

    return Plancheck()


def plans_api() -> PlansApi | HttpClient:
    """For the plan verbs: the HTTP API when PLANCHECK_API_URL and PLANCHECK_TOKEN are set (no database
    URL needed), else the Python API's plans part alone (a CI job's `plan checks` loads no more)."""
    from plancheck.api.plans import PlansApi
    from plancheck.api.remote import from_environment

    return from_environment() or PlansApi()


def fail(message: str) -> NoReturn:
    raise CliError(message)


def emit(json_output: bool, data: Any, human: Any = None) -> None:
    """Print `data` as JSON with --json, else `human` (a rich renderable or text; default: a key/value table)."""
    if json_output:
        render.print_json(stdout, data)
    elif human is None:
        stdout.print(render.key_value_table(data))
    else:
        stdout.print(human)


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """The file's bytes; a file of more than `limit` bytes is refused after reading limit + 1 of them, so
    `/dev/zero` or a huge file never fills memory."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        fail(f"{what} {str(path)!r} not found")
    except IsADirectoryError:
        fail(f"{what} {str(path)!r} is a directory")
    except OSError as exc:
        fail(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}")
    if len(data) > limit:
        fail(f"{what} {str(path)!r} is larger than the limit of {limit:,} bytes")
    return data


def read_settings(path: Path | None) -> dict[str, Any] | None:
    """A project settings file (a JSON object), or None without a path."""
    if path is None:
        return None
    try:
        settings = json.loads(read_bytes(path, "settings file", MAX_SETTINGS_BYTES).decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"settings file {str(path)!r} is not valid JSON: {exc}")
    if not isinstance(settings, dict):
        fail(f"settings file {str(path)!r} must hold a JSON object")
    return settings


def parse_labels(values: list[str] | None) -> dict[str, str] | None:
    """`k=v` options as a dict; None when no --label was given."""
    if not values:
        return None
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key.strip():
            fail(f"label {value!r} must look like key=value")
        labels[key.strip()] = label.strip()
    return labels
