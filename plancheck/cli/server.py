"""`plancheck api serve` and `plancheck token create|list|revoke`: the HTTP server and its tokens.

These are operator commands: they use the metadata database (PLANCHECK_DATABASE_URL) directly and
never the HTTP client, whatever PLANCHECK_API_URL says.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from plancheck.cli.common import JsonOption, api, emit, stderr, stdout
from plancheck.cli.render import print_json

api_app = typer.Typer(help="The HTTP API and results page.", no_args_is_help=True)
token_app = typer.Typer(
    help="Scoped bearer tokens for the HTTP API and results page (stored hashed).", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Token name: letters, digits, '-' or '_'.")]


@api_app.command("serve")
def api_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8080,
) -> None:
    """Serve the JSON API (/api/v1, OpenAPI at /openapi.json, docs at /docs), the results page,
    /healthz and /metrics until Ctrl-C or SIGTERM."""
    from plancheck.server.app import serve

    stderr.print(f"serving the plancheck API and results page on http://{host}:{port}/", markup=False, highlight=False)
    serve(host, port)


@token_app.command("create")
def token_create(
    name: NameArg,
    scope: Annotated[str, typer.Option("--scope", help="read, submit (includes read) or admin (includes both).")],
    project: Annotated[str | None, typer.Option("--project", "-p", help="Limit the token to this project.")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 90d, 12h, 2w (default: none).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a token and print it once (only its hash is stored). Without --json the token alone
    goes to stdout, so `TOKEN=$(plancheck token create ci --scope submit)` captures it."""
    created = api().create_token(name, scope, project, expires)
    if json_output:
        print_json(stdout, asdict(created))
        return
    reach = f"project {created.project}" if created.project else "all projects"
    expiry = f"expires {created.expires_at:%Y-%m-%d %H:%M %Z}" if created.expires_at else "never expires"
    stderr.print(
        f"token {created.name!r} (id {created.id}): scope {created.scope}, {reach}, {expiry}. "
        "It is shown only this once: store it now.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    stdout.print(created.token, markup=False, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(json_output: JsonOption = False) -> None:
    """Every token with its scope, project, expiry and state (never the token itself)."""
    tokens = api().list_tokens()
    table = Table(title="API tokens", title_justify="left")
    for column in ("id", "name", "scope", "project", "state", "created", "expires"):
        table.add_column(column)
    for token in tokens:
        expires = token["expires_at"].isoformat(timespec="seconds") if token["expires_at"] else "never"
        table.add_row(
            str(token["id"]),
            escape(token["name"]),
            token["scope"],
            escape(token["project"] or "all"),
            token["state"],
            token["created_at"].isoformat(timespec="seconds"),
            expires,
        )
    emit(json_output, {"tokens": tokens}, table)


@token_app.command("revoke")
def token_revoke(name: NameArg, json_output: JsonOption = False) -> None:
    """Revoke a token at once: API calls and page sessions using it are refused from now on."""
    api().revoke_token(name)
    emit(json_output, {"name": name, "revoked": True}, f"token [bold]{escape(name)}[/] revoked")


def register(app: typer.Typer) -> None:
    """Add `api serve` and `token …` to the main CLI."""
    app.add_typer(api_app, name="api")
    app.add_typer(token_app, name="token")
