"""The ASGI application: routes, middleware, error handlers and the embedded worker.

Requests pass FastAPI's stack (its middleware, routing, dependency injection), except
``GET /v1/videos/{id}``, the route clients poll: ``Api`` hands it to a bare ASGI app
(``videos.Retrieve``) that answers the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from reelgate import __version__
from reelgate.api import admin as admin_api
from reelgate.api import (
    bench,
    callbacks,
    content,
    docs,
    errors,
    files,
    health,
    listing,
    videos,
    webhooks,
)
from reelgate.api import metrics as api_metrics
from reelgate.api import usage as usage_api
from reelgate.api.dialects import ark as ark_dialect
from reelgate.api.dialects import openai as openai_dialect
from reelgate.api.events import router as events_router
from reelgate.api.lifecycle import router as lifecycle_router
from reelgate.api.middleware import BodyLimit, RequestId
from reelgate.api.openapi import complete
from reelgate.api.server import Peers
from reelgate.dashboard.routes import ROUTERS as dashboard_routers
from reelgate.wiring import Components

log = logging.getLogger("reelgate")


class Api(FastAPI):
    """FastAPI, with the fast path of the retrieve route in front of its stack."""

    retrieve: ASGIApp | None = None
    metered: ASGIApp | None = None  # api.metrics.HttpMetrics around ``dispatch``, when on
    documented: Sequence[BaseRoute] = ()  # the routes of the routers included, for openapi()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.metered is not None:
            await self.metered(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The fast path of the retrieve route, or FastAPI's stack for everything else."""
        if (
            self.retrieve is not None
            and scope["type"] == "http"
            and videos.retrieve_id(scope) is not None
        ):
            scope["route_path"] = api_metrics.RETRIEVE_ROUTE
            await self.retrieve(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, completed with the bodies, answers and security (api/openapi.py)."""
        if self.openapi_schema is None:
            models = [spec.id for spec in self.state.tasks.catalog]
            aliases = [name for name in self.state.settings.openai_aliases if name]
            self.openapi_schema = complete(super().openapi(), self.documented, models, aliases)
        return self.openapi_schema


def create_app(
    components: Components,
    *,
    embedded_worker: bool = True,
    on_ready: Callable[[Components], Awaitable[None]] | None = None,
    peers: Peers | None = None,
) -> FastAPI:
    """The reelgate API over ``components``; runs a worker in-process when asked to.

    ``on_ready`` runs once the schema is migrated, before requests are served.
    ``peers`` links the API processes of one machine: a create here wakes the worker
    of the process that runs one.
    """
    with_worker = embedded_worker and components.settings.workers > 0
    hub = components.event_hub()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await components.store.migrate()
        if on_ready is not None:
            await on_ready(components)
        stop = asyncio.Event()
        running: asyncio.Task[None] | None = None
        feeding = asyncio.create_task(hub.run(), name="task events")  # streams' one reader
        if with_worker:
            if peers is not None:
                peers.attach(components.wake)
            worker = components.worker()
            running = asyncio.create_task(
                components.run_worker(stop, worker), name="embedded worker"
            )
            log.info(
                "embedded worker %s: %d concurrent renders", worker.id, components.settings.workers
            )
        if with_worker or peers is None:  # one line per machine, not per API process
            _log_renderers(components)
        gc.freeze()  # what start-up made lives on: keep it out of every collection
        try:
            yield
        finally:
            stop.set()
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            if with_worker and peers is not None:
                peers.detach()
            try:
                if running is not None:
                    await running
            finally:
                await components.close()

    app = Api(
        title="reelgate",
        version=__version__,
        lifespan=lifespan,
        description="CometAPI's asynchronous video task API, self-hosted.",
        redirect_slashes=False,  # a redirect has no body: unknown paths get the JSON 404
        docs_url=None,  # /docs is our own page (api/docs.py): no CDN, assets in the package
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
    state.creates = components.creates
    state.webhooks = components.webhooks
    state.usage = components.usage
    state.events = hub
    state.wake_peers = peers.notify if peers is not None and not with_worker else _nothing
    routers = (
        videos.router,
        lifecycle_router,
        events_router,
        listing.router,
        content.router,
        webhooks.router,
        files.router,
        callbacks.router,
        health.router,
        ark_dialect.router,
        openai_dialect.router,
        admin_api.router,
        usage_api.router,
        docs.router,
    )
    for router in routers:
        app.include_router(router)
    app.documented = [route for router in routers for route in router.routes]
    for router in dashboard_routers:  # /dashboard: pages for browsers, not in the schema
        app.include_router(router)
    if components.settings.bench_routes:
        app.include_router(bench.router)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=components.settings.max_body_bytes)
    app.add_middleware(RequestId)
    app.retrieve = videos.Retrieve(components.keys, components.tasks)
    if components.settings.metrics:
        metered = api_metrics.HttpMetrics(app.dispatch)
        gauges = api_metrics.StoreGauges(components.store)
        token = components.settings.metrics_token
        state.metrics = api_metrics.Scrape(gauges, token, flush=metered.flush)
        app.include_router(api_metrics.router)
        app.metered = metered
    return app


def _nothing() -> None:
    return None


def _log_renderers(components: Components) -> None:
    by_renderer: dict[str, list[str]] = {}
    for model, renderer in components.renderers.items():
        by_renderer.setdefault(renderer.name, []).append(model)
    for name, models in by_renderer.items():
        if name == "preview":
            log.info("the built-in PREVIEW renderer (CPU, offline) serves: %s", ", ".join(models))
        else:
            log.info("renderer %s serves: %s", name, ", ".join(models))
