"""Operations commands: `plancheck metrics serve` and `plancheck status`.

`register(app)` adds them to the main CLI; `python -m plancheck.cli.ops` runs them on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from plancheck.cli.common import EXIT_USAGE, JsonOption, emit, stderr
from plancheck.cli.render import plain, safe

if TYPE_CHECKING:
    from plancheck.core.settings import Settings


def _settings() -> Settings:
    """Settings from the environment; a bad one is a one-line error and exit 3, as in the main CLI."""
    from plancheck.core.settings import SettingsError, load_settings  # pydantic: only when a command runs

    try:
        return load_settings()
    except SettingsError as exc:
        stderr.print(f"error: {plain(exc)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


def metrics_serve(
    port: int = typer.Option(9808, "--port", help="TCP port of the /metrics endpoint."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)."),
) -> None:
    """Serve Prometheus metrics computed from PostgreSQL on each scrape."""
    from plancheck.api import Plancheck
    from plancheck.core.logs import configure

    settings = _settings()
    configure(settings.log_format)
    stderr.print(f"serving plancheck metrics on http://{host}:{port}/metrics", markup=False, highlight=False)
    Plancheck(settings).serve_metrics(host, port)


def status(
    json_output: JsonOption = False,
    timeout: float = typer.Option(1.0, "--timeout", min=0.1, help="Seconds each probe may take."),
) -> None:
    """Health of database, broker, workers and beat, and the backlog. Exit 0 healthy, 1 otherwise."""
    from plancheck.api import Plancheck

    health = Plancheck(_settings()).status(timeout)
    table = Table(title="plancheck status: " + ("healthy" if health.healthy else "UNHEALTHY"))
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in health.checks:
        table.add_row(check.name, "[green]OK[/]" if check.ok else "[red]FAIL[/]", safe(check.detail))
    emit(json_output, health.to_json(), table)
    raise typer.Exit(0 if health.healthy else 1)


def register(app: typer.Typer) -> None:
    """Add `metrics serve` and `status` to `app`."""
    metrics = typer.Typer(help="Prometheus metrics computed from PostgreSQL.", no_args_is_help=True)

    @metrics.callback()
    def _metrics() -> None:
        """Prometheus metrics computed from PostgreSQL."""

    metrics.command("serve")(metrics_serve)
    app.add_typer(metrics, name="metrics")
    app.command("status")(status)


def _standalone() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(app)
    return app


if __name__ == "__main__":
    _standalone()()
