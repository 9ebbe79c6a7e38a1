"""``tracseq tokens``, ``tracseq audit`` and ``tracseq management``: the control plane's commands.

Registered on the main ``tracseq`` app (:mod:`tracseq_dagster.cli`) by ``add_typer``; the
commands read the same settings as the services (:mod:`tracseq_dagster.control.config`), so a
token created here is the token the services accept.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tracseq_dagster.control.roles import ROLES

console = Console()

tokens_app = typer.Typer(help="API tokens with roles (stored hashed): create, revoke, list.", no_args_is_help=True)
management_app = typer.Typer(help="The management API (models, promotions, approvals, features).", no_args_is_help=True)


def cli_actor() -> str:
    """Who a command runs as, for the audit log: ``cli:<system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli:unknown"


def _tokens():  # type: ignore[no-untyped-def]
    from tracseq_dagster.control.config import control_db_url
    from tracseq_dagster.control.database import open_engine
    from tracseq_dagster.control.tokens import TokenStore

    return TokenStore(open_engine(control_db_url()))


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (named in the audit log), e.g. lims-prod or alice.")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
) -> None:
    """Create a token; its secret is printed once (only its SHA-256 is stored)."""
    from tracseq_dagster.control.audit import open_audit_log
    from tracseq_dagster.control.roles import UnknownRole
    from tracseq_dagster.control.tokens import TokenError

    try:
        secret = _tokens().create(name, role, created_by=cli_actor())
    except (TokenError, UnknownRole) as error:
        _fail(str(error))
    open_audit_log().record(actor=cli_actor(), role="cli", action="token.create", outcome="ok", reason=f"{name} as {role}")
    typer.echo(secret)
    typer.echo(f"token {name} ({role}) created: keep the line above, it is not shown again", err=True)


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument(help="The token's name (tracseq tokens list).")]) -> None:
    """Revoke a token: the services refuse it within seconds (their lookup cache)."""
    from tracseq_dagster.control.audit import open_audit_log
    from tracseq_dagster.control.tokens import TokenError

    try:
        _tokens().revoke(name)
    except TokenError as error:
        _fail(str(error))
    open_audit_log().record(actor=cli_actor(), role="cli", action="token.revoke", outcome="ok", reason=name)
    typer.echo(f"token {name} revoked")


@tokens_app.command("list")
def tokens_list() -> None:
    """Every token: name, role, when and by whom it was created, and whether it is revoked."""
    table = Table("name", "role", "created (UTC)", "by", "revoked (UTC)")
    for t in _tokens().list():
        table.add_row(
            t.name,
            t.role,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            t.created_by,
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)


def audit_command(
    model: Annotated[str | None, typer.Option(help="Only this model's entries.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this (promotion, rollback, token, retrain).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="The latest N entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
) -> None:
    """Show the audit log: who did what to which model and version, when, the outcome and why."""
    import json

    from tracseq_dagster.control.audit import open_audit_log

    entries = open_audit_log().entries(model=model, action=action, limit=limit)
    if as_json:
        for e in entries:
            typer.echo(json.dumps(e.as_dict()))
        return
    table = Table("when (UTC)", "who", "role", "action", "model", "version", "outcome", "reason", title="audit log")
    for e in entries:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.role, e.action, e.model or "", e.version or "", e.outcome, e.reason)
    console.print(table)


@management_app.command("serve")
def management_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8100,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (state is in the databases, so any number).")] = 1,
) -> None:
    """Run the management API (uvicorn); its OpenAPI document is at /openapi.json, the explorer at /docs."""
    import uvicorn

    from tracseq_dagster.control.api import ControlPlane

    plane = ControlPlane.from_environment()  # a wrong setting fails here, in one line, before the server starts
    if not plane.auth:
        typer.echo("warning: TRACSEQ_AUTH=off: every request is served as the anonymous admin", err=True)
    uvicorn.run("tracseq_dagster.control.api:app_from_environment", factory=True, host=host, port=port, workers=workers)


@management_app.command("openapi")
def management_openapi() -> None:
    """Print the management API's OpenAPI document (JSON), e.g. for a LIMS integration."""
    import json

    from tracseq_dagster.control.api import ControlPlane, create_app

    typer.echo(json.dumps(create_app(ControlPlane.from_environment()).openapi(), indent=2))
