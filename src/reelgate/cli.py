"""The ``reelgate`` command: the server (serve, worker, migrate, keys) and the client."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from reelgate.client.cli import register as register_client_commands

app = typer.Typer(
    help="reelgate: a self-hosted gateway for asynchronous video generation.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

T = TypeVar("T")
FIRST_KEY_FILE = "first-api-key"

DataDir = Annotated[Path | None, typer.Option(help="Data folder [env REELGATE_DATA_DIR].")]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///… or postgresql://… [env REELGATE_DATABASE_URL].")
]


def _settings(**flags: Any) -> Any:
    from pydantic import ValidationError

    from reelgate.settings import Settings

    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        typer.echo(f"error: invalid settings:\n{exc}", err=True)
        raise typer.Exit(2) from None


ConfigFile = Annotated[
    str | None,
    typer.Option(help="The TOML configuration file: providers and routes [env REELGATE_CONFIG]."),
]


def _build(settings: Any) -> Any:
    from reelgate.config import ConfigError
    from reelgate.wiring import build

    try:
        return build(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # One line per upstream request is noise at info level (polls are many).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [env REELGATE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env REELGATE_PORT].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Concurrent renders in this process; 0 runs the API only [env REELGATE_WORKERS]."
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
    public_url: Annotated[
        str | None, typer.Option(help="Base URL of signed links [env REELGATE_PUBLIC_URL].")
    ] = None,
) -> None:
    """Run the API server, with an embedded worker pool unless --workers 0."""
    import uvicorn

    from reelgate.api.app import create_app
    from reelgate.services.keys import ensure_first_key
    from reelgate.wiring import Components

    settings = _settings(
        host=host,
        port=port,
        workers=workers,
        data_dir=data_dir,
        database_url=database_url,
        public_url=public_url,
        config=config,
    )
    _configure_logging(settings.log_level)
    components = _build(settings)

    async def announce(c: Components) -> None:
        key_file = settings.data_dir / FIRST_KEY_FILE
        secret = await ensure_first_key(c.keys, key_file)
        typer.echo(f"reelgate is serving at {settings.public_url}", err=True)
        if secret is not None:
            typer.echo(f"API key (shown once, also kept in {key_file}): {secret}", err=True)
        elif key_file.is_file():
            typer.echo(f"API key: the first one is kept in {key_file}", err=True)
        else:
            typer.echo("API keys exist; make another with `reelgate keys create`", err=True)
        typer.echo(
            f"try: curl -H 'Authorization: Bearer <key>' {settings.public_url}/v1/models", err=True
        )

    api = create_app(components, on_ready=announce)
    server_config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive,
    )
    uvicorn.Server(server_config).run()


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Concurrent renders in this process [env REELGATE_WORKERS].")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated model ids this worker takes (default: all it can render)."
        ),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds to let renders finish on SIGTERM before handing them back "
            "[env REELGATE_GRACE_SECONDS]."
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Run only workers: claim tasks, render them or hand them to their providers."""
    import signal

    settings = _settings(
        workers=concurrency,
        grace_seconds=grace,
        data_dir=data_dir,
        database_url=database_url,
        config=config,
    )
    if settings.workers < 1:
        typer.echo("error: a worker needs --concurrency of at least 1", err=True)
        raise typer.Exit(2)
    _configure_logging(settings.log_level)
    components = _build(settings)
    chosen = None
    if models:
        chosen = frozenset(m.strip() for m in models.split(",") if m.strip())
        unknown = chosen - set(components.renderers) - set(components.remote_routes)
        if unknown:
            typer.echo(f"error: no renderer for {', '.join(sorted(unknown))}", err=True)
            raise typer.Exit(2)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await components.store.migrate()
            the_worker = components.worker(chosen)
            remote = components.remote_routes
            logging.getLogger("reelgate").info(
                "worker %s: %d concurrent renders of %s; upstream providers for %s",
                the_worker.id,
                settings.workers,
                ", ".join(sorted(m for m in chosen or components.renderers if m not in remote))
                or "no model",
                ", ".join(sorted(m for m in chosen or remote if m in remote)) or "no model",
            )
            await components.run_worker(stop, the_worker)
        finally:
            await components.close()

    asyncio.run(go())


@app.command()
def migrate(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """Bring the database schema to the newest version."""
    from reelgate.store import open_store

    settings = _settings(database_url=database_url, data_dir=data_dir)
    store = open_store(settings.database_url)

    async def go() -> None:
        try:
            await store.migrate()
        finally:
            await store.close()

    _run(go)
    typer.echo("schema is up to date")


def _with_keys(
    database_url: str | None, data_dir: Path | None, fn: Callable[[Any], Awaitable[T]]
) -> T:
    import time

    from reelgate.services.keys import KeyService
    from reelgate.store import open_store

    settings = _settings(database_url=database_url, data_dir=data_dir)
    store = open_store(settings.database_url)

    async def go() -> T:
        try:
            await store.migrate()
            return await fn(KeyService(store, time.time))
        finally:
            await store.close()

    return _run(go)


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="Who owns the tasks made with this key.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create a key; its secret is printed once and never stored."""
    key, secret = _with_keys(database_url, data_dir, lambda keys: keys.create(owner, name))
    typer.echo(f"created {key.id} for owner {key.owner!r}", err=True)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """List keys (their prefixes only)."""
    import datetime

    for key in _with_keys(database_url, data_dir, lambda keys: keys.list()):
        created = datetime.datetime.fromtimestamp(key.created_at, datetime.UTC)
        state = "active" if key.active else "revoked"
        typer.echo(
            f"{key.id}\t{key.prefix}…\t{key.owner}\t{key.name}\t{state}\t{created:%Y-%m-%d %H:%M}Z"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from reelgate.domain.errors import NotFound

    try:
        key = _with_keys(database_url, data_dir, lambda keys: keys.revoke(key_id))
    except NotFound as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {key.id}")


def main() -> None:
    """Entry point of the ``reelgate`` command."""
    app()


register_client_commands(app)
