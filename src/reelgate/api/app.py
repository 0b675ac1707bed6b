"""The ASGI application: routes, middleware, error handlers and the embedded worker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI

from reelgate import __version__
from reelgate.api import bench, callbacks, errors, files, health, videos
from reelgate.api.middleware import BodyLimit, RequestId
from reelgate.wiring import Components

log = logging.getLogger("reelgate")


def create_app(
    components: Components,
    *,
    embedded_worker: bool = True,
    on_ready: Callable[[Components], Awaitable[None]] | None = None,
) -> FastAPI:
    """The reelgate API over ``components``; runs a worker in-process when asked to.

    ``on_ready`` runs once the schema is migrated, before requests are served.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await components.store.migrate()
        if on_ready is not None:
            await on_ready(components)
        stop = asyncio.Event()
        running: asyncio.Task[None] | None = None
        if embedded_worker and components.settings.workers > 0:
            worker = components.worker()
            running = asyncio.create_task(
                components.run_worker(stop, worker), name="embedded worker"
            )
            log.info(
                "embedded worker %s: %d concurrent renders", worker.id, components.settings.workers
            )
        _log_renderers(components)
        gc.freeze()  # what start-up made lives on: keep it out of every collection
        try:
            yield
        finally:
            stop.set()
            try:
                if running is not None:
                    await running
            finally:
                await components.close()

    app = FastAPI(
        title="reelgate",
        version=__version__,
        lifespan=lifespan,
        description="CometAPI's asynchronous video task API, self-hosted.",
        redirect_slashes=False,  # a redirect has no body: unknown paths get the JSON 404
        docs_url=None,  # every answer is JSON; the schema stays at /openapi.json
        redoc_url=None,
    )
    state = app.state
    state.settings = components.settings
    state.store = components.store
    state.blobs = components.blobs
    state.keys = components.keys
    state.tasks = components.tasks
    state.signer = components.signer
    state.clock = components.clock
    state.renderers = components.renderers
    state.config = components.config
    state.hint = components.hint
    app.include_router(videos.router)
    app.include_router(files.router)
    app.include_router(callbacks.router)
    app.include_router(health.router)
    if components.settings.bench_routes:
        app.include_router(bench.router)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=components.settings.max_body_bytes)
    app.add_middleware(RequestId)
    return app


def _log_renderers(components: Components) -> None:
    by_renderer: dict[str, list[str]] = {}
    for model, renderer in components.renderers.items():
        by_renderer.setdefault(renderer.name, []).append(model)
    for name, models in by_renderer.items():
        if name == "preview":
            log.info("the built-in PREVIEW renderer (CPU, offline) serves: %s", ", ".join(models))
        else:
            log.info("renderer %s serves: %s", name, ", ".join(models))
