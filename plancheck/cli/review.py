"""`plancheck review FILE…`: the SQL review rules alone, on local files: no cluster, no database.

For pre-commit hooks and CI. Exit 0: no ERROR finding; 1: ERROR findings; 3: bad input (a file
that cannot be read, is not UTF-8 or is larger than a plan may be, bad settings).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plancheck.cli.common import fail, read_bytes, read_settings

if TYPE_CHECKING:
    from plancheck.checks.advise import ReviewConfig

EXIT_CLEAN, EXIT_ERRORS = 0, 1


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="text for people, json, github (workflow annotations) or sarif (2.1.0)."),
]


def register(app: typer.Typer) -> None:
    app.command("review")(review_files)


def review_files(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="SQL files to review.")],
    output_format: FormatOption = OutputFormat.text,
    settings: Annotated[
        Path | None,
        typer.Option("--settings", help="Project settings JSON: sql_review rule levels and options."),
    ] = None,
) -> None:
    """Review SQL files with the rules alone (no cluster, no database). Exit 0: clean or warnings only;
    1: ERROR findings; 3: bad input."""
    from importlib.metadata import version

    from plancheck.checks.advise import batch, review  # here, not at the top: other commands start without them
    from plancheck.cli import formats
    from plancheck.core.settings import load_settings

    limits = load_settings()  # the limits `plan create` and the worker apply
    config = _config(settings)
    sheets = [(str(path), _sql(path, limits.max_sql_bytes)) for path in files]  # all read before any review
    with batch():
        reviewed = [
            (path, [result.to_json() for result in review(sql, path, config, max_bytes=limits.review_max_bytes)])
            for path, sql in sheets
        ]
    located = [formats.Located(result, path) for path, results in reviewed for result in results]
    if output_format is OutputFormat.json:
        document: dict[str, Any] = {"files": [{"path": path, "results": results} for path, results in reviewed]}
        typer.echo(json.dumps({**document, "counts": formats.counts(located)}, indent=2))
    elif output_format is OutputFormat.text:
        typer.echo("\n".join(formats.text_lines(located)))
    else:
        typer.echo(formats.machine_text(output_format, located, version("plancheck")), nl=False)
    raise typer.Exit(EXIT_ERRORS if formats.counts(located)["ERROR"] else EXIT_CLEAN)


def _sql(path: Path, max_bytes: int) -> str:
    data = read_bytes(path, "SQL file", max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        fail(f"SQL file {str(path)!r} is not UTF-8 text (byte {error.start} is invalid)")


def _config(path: Path | None) -> ReviewConfig:
    from plancheck.checks.advise import ReviewConfig

    settings = read_settings(path)
    try:
        return ReviewConfig.from_project_settings(settings or {})
    except ValueError as error:
        fail(f"settings file {str(path)!r}: {error}")
