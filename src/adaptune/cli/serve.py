"""``adaptune serve`` (the HTTP service under uvicorn) and ``adaptune tokens`` (API tokens)."""

from __future__ import annotations

import typer
from rich.markup import escape

from adaptune.cli.output import err, out, print_json
from adaptune.errors import ConfigError
from adaptune.store import open_store

tokens = typer.Typer(help="API tokens with scopes (read, write, admin) for the service.")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    generator: str = typer.Option(
        None,
        "--generator",
        help="auto (llama.cpp when installed, else transformers), transformers, llamacpp, "
        "openai or none (default: ADAPTUNE_GENERATOR, else auto).",
    ),
    model: str = typer.Option(None, "--model", help="Base model path or id (ADAPTUNE_MODEL)."),
    warm: bool = typer.Option(
        True, "--warm/--no-warm", help="Build indexes and load the model at start-up."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the service: tickets, webhooks, feedback, adapters, jobs, metrics and the dashboard."""
    import logging

    import uvicorn

    from adaptune.serve import create_app, serve_settings

    logging.getLogger("adaptune").setLevel(logging.INFO)
    settings = serve_settings(generator=generator, model=model, warm=warm)
    store = open_store()
    app = create_app(store, settings)
    if settings.api_token is None:
        err.print(
            "[yellow]ADAPTUNE_API_TOKEN is not set: write endpoints accept only tokens made "
            "with `adaptune tokens create`.[/]"
        )
    err.print(
        f"adaptune serving {store.settings.home} on http://{host}:{port} (dashboard: /dashboard)"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        store.close()


@tokens.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the token (who or what uses it)."),
    scope: list[str] = typer.Option(
        ["write"], "--scope", help="read, write or admin; repeat for several."
    ),
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from adaptune.serve.tokens import create_token

    token = create_token(open_store(), name, scope)
    out.print(token)
    scopes = ", ".join(sorted(set(scope)))
    err.print(escape(f"token {name!r} with scopes {scopes}: keep it now, it is not stored."))


@tokens.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tokens (names and scopes, never the tokens)."""
    from adaptune.serve.tokens import list_tokens

    rows = list_tokens(open_store())
    if as_json:
        print_json(rows)
        return
    for r in rows:
        state = f"revoked {r['revoked_at'][:16]}" if r["revoked_at"] else "active"
        out.print(f"{r['name']}\t{','.join(r['scopes'])}\t{state}")


@tokens.command("revoke")
def revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: it stops working at once."""
    from adaptune.serve.tokens import revoke_token

    if not revoke_token(open_store(), name):
        raise ConfigError(f"No active token named {name!r}; see `adaptune tokens list`.")
    err.print(escape(f"token {name!r} revoked"))
