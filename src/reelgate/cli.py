"""The ``reelgate`` command: the server (serve, worker, migrate, gc, keys) and the client."""

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
EXIT_PORT = 1  # the port cannot be listened on (busy, not ours)


def _setting(variable: str, help: str, default: str | None = None) -> Any:
    """The option of one ``REELGATE_*`` setting.

    Its help names the variable and the default; the value itself is read by
    pydantic-settings (flags override the environment), never by click as well, so
    there is one source of each setting.
    """
    text = f"{help} (env var: {variable})"
    return typer.Option(help=text, show_default=default if default is not None else False)


# The defaults --help shows; tests/firsthour checks them against ``Settings``. Written
# out rather than read from ``Settings``: the client commands of this same CLI must not
# import the server's settings (pydantic-settings is a server dependency).
DEFAULTS = {
    "host": "127.0.0.1",
    "port": "8000",
    "api_processes": "1",
    "url_ttl": "3600",
    "log_level": "info",
    "grace_seconds": "30.0",
}


def _default(name: str) -> str:
    return DEFAULTS[name]


def _default_workers() -> str:
    import os

    return f"cores - 1, at least 1; here {max(1, (os.cpu_count() or 2) - 1)}"


DataDir = Annotated[
    Path | None,
    _setting("REELGATE_DATA_DIR", "Data folder: database, videos, signing key.", "data"),
]
DatabaseUrl = Annotated[
    str | None,
    _setting(
        "REELGATE_DATABASE_URL",
        "sqlite:///path or postgresql://user@host/db.",
        "sqlite:///<data-dir>/reelgate.db",
    ),
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
    _setting(
        "REELGATE_CONFIG",
        "The TOML configuration file: providers and routes.",
        "none: every model on the preview renderer",
    ),
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


def _configure_logging(settings: Any) -> None:
    from reelgate.logs import configure

    configure(settings.log_level, settings.log_format)


def _joined(settings: Any, role: str) -> None:
    if settings.metrics:
        from reelgate import metrics

        metrics.joined(role)


def _process_ended(pid: int) -> None:
    from reelgate import metrics

    metrics.process_ended(pid)


def _worker_metrics(settings: Any) -> None:
    """Count this worker alive; serve its own /metrics when REELGATE_METRICS_PORT is set.

    The port serves the values of every process sharing the metrics folder (a worker on
    its own host: itself), without the database gauges that the API's /metrics adds.
    """
    if not settings.metrics:
        return
    import atexit
    import os

    from reelgate import metrics

    metrics.joined("worker")
    atexit.register(metrics.process_ended, os.getpid())
    if settings.metrics_port:
        metrics.serve_port(settings.metrics_port, settings.host)


def _share_metrics(settings: Any) -> None:
    """Before anything counts: keep this host's metrics in the shared folder (multiprocess)."""
    if settings.metrics:
        from reelgate import metrics

        metrics.share(settings.metrics_dir)


@app.command()
def serve(
    host: Annotated[
        str | None, _setting("REELGATE_HOST", "Address to listen on.", _default("host"))
    ] = None,
    port: Annotated[
        int | None, _setting("REELGATE_PORT", "Port to listen on.", _default("port"))
    ] = None,
    api_processes: Annotated[
        int | None,
        _setting(
            "REELGATE_API_PROCESSES",
            "API processes sharing the port (up to one per core); the first one also runs "
            "the embedded worker.",
            _default("api_processes"),
        ),
    ] = None,
    workers: Annotated[
        int | None,
        _setting(
            "REELGATE_WORKERS",
            "Concurrent renders of the embedded worker; 0 runs the API only.",
            _default_workers(),
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    storage_url: Annotated[
        str | None,
        _setting(
            "REELGATE_STORAGE_URL",
            "Where inputs and videos are kept: file:///path or s3://bucket/prefix.",
            "file://<data-dir>/blobs",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        _setting(
            "REELGATE_PUBLIC_URL", "Base URL of signed download links.", "http://<host>:<port>"
        ),
    ] = None,
    url_ttl: Annotated[
        int | None,
        _setting(
            "REELGATE_URL_TTL",
            "Lifetime of a signed video_url, in seconds.",
            _default("url_ttl"),
        ),
    ] = None,
    config: ConfigFile = None,
    log_level: Annotated[
        str | None,
        _setting("REELGATE_LOG_LEVEL", "debug, info, warning or error.", _default("log_level")),
    ] = None,
) -> None:
    """Run the API server, with an embedded worker pool unless --workers 0.

    Every option can also be set by its environment variable (the option wins).
    REELGATE_SIGNING_SECRET, the HMAC key of signed links, is read from the
    environment only (a flag would show it in the process list); without it a key is
    generated once into <data-dir>/signing.key. Exits 1, before printing anything
    else, when the port cannot be listened on.
    """
    from reelgate.api import server
    from reelgate.api.app import create_app
    from reelgate.services.keys import ensure_first_key
    from reelgate.wiring import Components

    settings = _settings(
        host=host,
        port=port,
        api_processes=api_processes,
        workers=workers,
        data_dir=data_dir,
        database_url=database_url,
        storage_url=storage_url,
        public_url=public_url,
        url_ttl=url_ttl,
        config=config,
        log_level=log_level,
    )
    processes = settings.api_processes
    if processes > 1 and "memory:" in (settings.database_url, settings.storage_url):
        typer.echo(
            "error: several API processes need a shared database and storage, not memory:",
            err=True,
        )
        raise typer.Exit(2)
    _configure_logging(settings)
    _share_metrics(settings)
    components = _build(settings)  # a bad configuration file is reported first
    try:
        sockets = server.listen(settings.host, settings.port, processes)
    except server.PortUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_PORT) from None

    async def announce(c: Components) -> None:
        key_file = settings.data_dir / FIRST_KEY_FILE
        secret = await ensure_first_key(c.keys, key_file)
        typer.echo(f"reelgate is serving at {settings.public_url}", err=True)
        if secret is not None:
            typer.echo(f"API key (shown once, also kept in {key_file}): {secret}", err=True)
        elif key_file.is_file():
            typer.echo(f"API key: the first one is kept in {key_file}", err=True)
        else:
            typer.echo(f"API keys exist; make another with `{cli} keys create`", err=True)
        if processes > 1:
            typer.echo(f"{processes} API processes; the first runs the embedded worker", err=True)
        typer.echo(
            f"try: curl -H 'Authorization: Bearer <key>' {settings.public_url}/v1/models", err=True
        )
        typer.echo(f"the CLI (nothing to activate): {cli} --help", err=True)
        typer.echo(f"API docs: {settings.public_url}/docs", err=True)

    cli = _command_name()
    if processes == 1:
        _joined(settings, "api")
        app = create_app(components, on_ready=announce)
        server.serve(app, settings, sockets[0], hub=app.state.events)
        return
    peers = server.Peers() if settings.workers > 0 else None  # to wake the embedded worker

    def run(index: int) -> None:
        mine = _build(settings)  # each process its own connections, pools and ids
        _joined(settings, "api")
        first = index == 0
        api = create_app(
            mine, embedded_worker=first, on_ready=announce if first else None, peers=peers
        )
        server.serve(api, settings, sockets[index % len(sockets)], hub=api.state.events)

    status = server.run_processes(processes, run, on_exit=_process_ended)
    if status:
        raise typer.Exit(status)


def _command_name() -> str:
    """How to run this very ``reelgate`` command again, from the current folder."""
    import os
    import shutil

    program = Path(sys.argv[0])
    if program.name != "reelgate":  # python -m reelgate
        return f"{sys.executable} -m reelgate"
    found = shutil.which("reelgate")
    if found is not None and Path(found).resolve() == program.resolve():
        return "reelgate"
    try:
        relative = os.path.relpath(program)
    except ValueError:  # another drive (Windows)
        return str(program.resolve())
    return str(program.resolve()) if relative.startswith("..") else relative


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        _setting("REELGATE_WORKERS", "Concurrent renders in this process.", _default_workers()),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated model ids this worker takes (default: all it can render)."
        ),
    ] = None,
    device: Annotated[
        str | None,
        _setting(
            "REELGATE_DEVICE",
            "The device of every local (diffusers) model here, e.g. cuda:0.",
            "each model's own device",
        ),
    ] = None,
    grace: Annotated[
        float | None,
        _setting(
            "REELGATE_GRACE_SECONDS",
            "Seconds to let renders finish on SIGTERM before handing them back.",
            _default("grace_seconds"),
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
        device=device,
    )
    if settings.workers < 1:
        typer.echo("error: a worker needs --concurrency of at least 1", err=True)
        raise typer.Exit(2)
    _configure_logging(settings)
    _share_metrics(settings)
    components = _build(settings)
    _worker_metrics(settings)
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
            await _warm(components, chosen)
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


async def _warm(components: Any, models: frozenset[str] | None) -> None:
    """Load the local (GPU) models this worker serves before it claims any task."""
    from reelgate.domain.errors import RenderError
    from reelgate.renderers.diffusers import DiffusersRenderer

    for renderer in {id(r): r for r in components.renderers.values()}.values():
        if isinstance(renderer, DiffusersRenderer):
            try:
                await renderer.warm(models)
            except RenderError as exc:
                notes = "; ".join(getattr(exc, "__notes__", ()))
                typer.echo(f"error: {exc.message} ({notes})", err=True)
                raise typer.Exit(2) from None


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


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    retain_outputs: Annotated[
        str | None,
        _setting(
            "REELGATE_RETAIN_OUTPUTS",
            "Keep a finished task's video and thumbnail this long, e.g. 30d, 12h; off: ever.",
            "off",
        ),
    ] = None,
    retain_inputs: Annotated[
        str | None,
        _setting(
            "REELGATE_RETAIN_INPUTS",
            "Keep a finished task's input image this long, e.g. 7d; off: ever.",
            "off",
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    storage_url: Annotated[
        str | None,
        _setting("REELGATE_STORAGE_URL", "file:///path or s3://bucket/prefix.", "<data-dir>/blobs"),
    ] = None,
) -> None:
    """Delete the files of tasks finished longer ago than the retention, now.

    The janitor of the worker processes does the same every REELGATE_RETENTION_INTERVAL
    seconds; this runs one sweep (it waits for none: exit 3 when a janitor is at work).
    """
    import time

    from reelgate.services.retention import Janitor
    from reelgate.store import open_store
    from reelgate.wiring import blob_store

    settings = _settings(
        retain_outputs=retain_outputs,
        retain_inputs=retain_inputs,
        data_dir=data_dir,
        database_url=database_url,
        storage_url=storage_url,
    )
    if not settings.retention.active:
        typer.echo("nothing to do: set --retain-outputs or --retain-inputs (or their env vars)")
        return
    store, blobs = open_store(settings.database_url), blob_store(settings)

    async def go() -> Any:
        try:
            await store.migrate()
            janitor = Janitor(
                store, blobs, time.time, settings.retention, batch=settings.retention_batch
            )
            return await janitor.sweep(dry_run=dry_run)
        finally:
            await blobs.close()
            await store.close()

    sweep = _run(go)
    if not sweep.ran:
        typer.echo("another process is sweeping now (its lease is held); try again later", err=True)
        raise typer.Exit(3)
    verb = "would delete" if dry_run else "deleted"
    for kind, swept in sweep.kinds.items():
        failed = f"; {swept.failed} failed (kept for the next run)" if swept.failed else ""
        typer.echo(
            f"{kind.value}: {verb} the files of {swept.tasks} tasks, {swept.bytes} bytes{failed}"
        )


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


RatePerMinute = Annotated[
    int | None,
    typer.Option(min=0, help="Creates per UTC minute (counted over the key's owner)."),
]
MaxActive = Annotated[
    int | None, typer.Option(min=0, help="Unfinished tasks of the owner at a time.")
]
SecondsPerDay = Annotated[
    int | None, typer.Option(min=0, help="Seconds of video the owner may ask for per UTC day.")
]


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="Who owns the tasks made with this key.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key: /v1/admin (keys, every owner's usage).")
    ] = False,
    rate_per_minute: RatePerMinute = None,
    max_active: MaxActive = None,
    seconds_per_day: SecondsPerDay = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Create a key (a user's unless --admin; no limits unless given); its secret is
    printed once and never stored."""
    from reelgate.domain.errors import InvalidParameter
    from reelgate.domain.quotas import Limits, Role

    limits = Limits(rate_per_minute, max_active, seconds_per_day)
    role = Role.ADMIN if admin else Role.USER
    try:
        key, secret = _with_keys(
            database_url, data_dir, lambda keys: keys.create(owner, name, role=role, limits=limits)
        )
    except InvalidParameter as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {key.id} ({key.role.value}) for owner {key.owner!r}", err=True)
    typer.echo(secret)


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    role: Annotated[str | None, typer.Option(help="admin or user.")] = None,
    rate_per_minute: RatePerMinute = None,
    max_active: MaxActive = None,
    seconds_per_day: SecondsPerDay = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(help="A limit to remove: rate-per-minute, max-active or seconds-per-day."),
    ] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Change a key's role or limits (the others stay as they are)."""
    from dataclasses import replace

    from reelgate.domain.errors import NotFound
    from reelgate.domain.quotas import Role

    cleared = {name.replace("-", "_") for name in clear or ()}
    unknown = cleared - {"rate_per_minute", "max_active", "seconds_per_day"}
    if unknown or role not in (None, "admin", "user"):
        typer.echo("error: --role is admin or user; --clear names a limit", err=True)
        raise typer.Exit(2)
    given = {"rate_per_minute": rate_per_minute, "max_active": max_active}
    given["seconds_per_day"] = seconds_per_day

    async def change(keys: Any) -> Any:
        key = await keys.get(key_id)
        values = {name: value for name, value in given.items() if value is not None}
        limits = replace(key.limits, **values, **dict.fromkeys(cleared))
        return await keys.update(key_id, limits=limits, role=None if role is None else Role(role))

    try:
        key = _with_keys(database_url, data_dir, change)
    except NotFound as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"updated {key.id}: {key.role.value}, {_limits_text(key.limits)}")


def _limits_text(limits: Any) -> str:
    shown = [f"{name}={value}" for name, value in limits.as_dict().items() if value is not None]
    return ",".join(shown) or "no limits"


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None, data_dir: DataDir = None) -> None:
    """List keys (their prefixes only), with their role and limits last."""
    import datetime

    for key in _with_keys(database_url, data_dir, lambda keys: keys.list()):
        created = datetime.datetime.fromtimestamp(key.created_at, datetime.UTC)
        state = "active" if key.active else "revoked"
        typer.echo(
            f"{key.id}\t{key.prefix}…\t{key.owner}\t{key.name}\t{state}\t{created:%Y-%m-%d %H:%M}Z"
            f"\t{key.role.value}\t{_limits_text(key.limits)}"
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
