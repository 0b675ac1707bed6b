"""The one place that picks concrete adapters from settings and wires the services."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import cast

import httpx

from reelgate import metrics
from reelgate.backends.remote import open_provider
from reelgate.blobs import open_blobs
from reelgate.config import Config, load_config
from reelgate.domain.catalog import SEEDANCE, Catalog
from reelgate.ports import BlobStore, Clock, HookStore, Listener, Provider, Renderer, TaskStore
from reelgate.services.addresses import AddressGuard, parse_networks
from reelgate.services.events import EventHub
from reelgate.services.idempotency import CreateService
from reelgate.services.keys import KeyService
from reelgate.services.retention import Janitor
from reelgate.services.signing import Signer, load_secret
from reelgate.services.tasks import TaskService
from reelgate.services.usage import UsageService
from reelgate.services.webhooks import WebhookService
from reelgate.settings import Settings
from reelgate.store import open_store
from reelgate.worker.cancels import Cancels
from reelgate.worker.remote import RemoteRunner
from reelgate.worker.runner import Worker, WorkerConfig
from reelgate.worker.submit import SubmitConfig
from reelgate.worker.wakeup import LocalWakeup
from reelgate.worker.webhooks import Deliverer, DeliveryConfig


@dataclass
class Components:
    """Everything a reelgate process runs on, built from one ``Settings``."""

    settings: Settings
    store: TaskStore
    blobs: BlobStore
    catalog: Catalog
    clock: Clock
    signer: Signer
    keys: KeyService
    tasks: TaskService
    renderers: dict[str, Renderer]
    wakeup: LocalWakeup
    listener: Listener | None
    config: Config
    providers: dict[str, Provider]
    remote_wakeup: LocalWakeup
    running: RemoteRunner | None = None  # the remote runner this process runs, if any
    cancels: Cancels | None = None  # tells this process's workers of cancelled tasks

    @property
    def remote_routes(self) -> dict[str, list[tuple[str, str]]]:
        """Public model id -> ordered (provider, upstream model), for remote models."""
        return self.config.remote_routes()

    def hint(self, task_id: str) -> bool:
        """Poll ``task_id`` at once if this process watches it (a provider called back)."""
        return self.running is not None and self.running.watcher.hint(task_id)

    def event_hub(self) -> EventHub:
        """The fan-out of task events to this process's streams (LISTEN on PostgreSQL)."""
        listener = None
        url = self.settings.database_url
        if url.startswith(("postgresql://", "postgres://")):
            from reelgate.store.postgres import PostgresEventListener

            listener = PostgresEventListener(url)
        return EventHub(
            self.store, listener=listener, poll_interval=self.settings.events_poll_interval
        )

    @functools.cached_property
    def webhooks(self) -> WebhookService:
        """Webhook endpoints, the delivery log and the callback secret."""
        guard = AddressGuard(parse_networks(self.settings.webhook_allowed_networks))
        return WebhookService(cast(HookStore, self.store), self.clock, guard, self.signer)

    @functools.cached_property
    def creates(self) -> CreateService:
        """Create with an ``Idempotency-Key`` and a ``callback_url``."""
        hooks = cast(HookStore, self.store)
        return CreateService(self.tasks, self.store, hooks, self.webhooks, self.clock)

    @functools.cached_property
    def usage(self) -> UsageService:
        """Usage per owner and model, priced by the configuration's price table."""
        return UsageService(self.store, self.clock, self.config.prices)

    def deliverer(self) -> Deliverer:
        """A webhook delivery loop over the outbox, configured by the settings."""
        settings = self.settings
        config = DeliveryConfig(
            timeout=settings.webhook_timeout,
            retry_base=settings.webhook_retry_base,
            poll_interval=settings.webhook_poll_interval,
        )
        return Deliverer(
            cast(HookStore, self.store),
            self.webhooks.guard,
            self.clock,
            video_url=self.tasks.blob_url,
            callback_secret=self.webhooks.callback_secret,
            config=config,
        )

    def wake(self) -> None:
        """Tell this process's local and remote workers that work may be waiting."""
        self.wakeup.notify()
        self.remote_wakeup.notify()

    def remote(self, worker_id: str, models: frozenset[str] | None = None) -> RemoteRunner | None:
        """The remote runner of this process (None when no model is routed upstream)."""
        routes = {
            model: routes
            for model, routes in self.remote_routes.items()
            if models is None or model in models
        }
        if not routes:
            return None
        scratch = self.settings.data_dir / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        submit = SubmitConfig(
            routes=routes,
            providers={
                name: provider
                for name, provider in self.config.providers.items()
                if name in self.providers
            },
            watch=self.config.watch,
        )
        return RemoteRunner(
            self.store,
            self.blobs,
            self.providers,
            self.clock,
            self.remote_wakeup,
            submit,
            worker=worker_id,
            scratch_dir=scratch,
            input_url=self.tasks.blob_url,
            callback_url=lambda task: self.tasks.callback_url(task.id),
            poll_interval=self.settings.poll_interval,
            grace_seconds=self.settings.grace_seconds,
        )

    def janitor(self) -> Janitor:
        """The retention janitor of these settings (``REELGATE_RETAIN_*``)."""
        settings = self.settings
        return Janitor(
            self.store,
            self.blobs,
            self.clock,
            settings.retention,
            batch=settings.retention_batch,
            interval=settings.retention_interval,
        )

    def worker(self, models: frozenset[str] | None = None) -> Worker:
        """A worker over these components, sized by the settings."""
        config = WorkerConfig(
            concurrency=max(1, self.settings.workers),
            models=models,
            grace_seconds=self.settings.grace_seconds,
            lease_seconds=self.settings.lease_seconds,
            max_attempts=self.settings.max_attempts,
            poll_interval=self.settings.poll_interval,
            scratch_dir=self.settings.data_dir / "scratch",
            min_free_bytes=self.settings.min_free_bytes,
        )
        (self.settings.data_dir / "scratch").mkdir(parents=True, exist_ok=True)
        return Worker(self.store, self.blobs, self.renderers, self.clock, self.wakeup, config)

    async def run_worker(self, stop: asyncio.Event, worker: Worker | None = None) -> None:
        """Run ``worker`` (default: ``self.worker()``) and the remote runner until ``stop``.

        Both are woken by the listener (PostgreSQL) and by creates in this process.
        """
        worker = worker or self.worker()
        listening = None
        if self.listener is not None:
            listening = asyncio.create_task(self.listener.run(self.wake))
        remote = self.running = self.remote(worker.id, worker.models)
        cancels = self.cancels or Cancels(self.store, self.clock)
        stoppers = [worker.cancel] + ([remote.cancel] if remote is not None else [])
        for stopper in stoppers:
            cancels.subscribe(stopper)
        reading = asyncio.create_task(cancels.run(), name="cancel log")
        delivering = asyncio.create_task(self.deliverer().run(stop), name="webhook deliveries")
        janitor = self.janitor()  # in every worker process; the lease lets one work at a time
        sweeping = None
        if janitor.retention.active:
            sweeping = asyncio.create_task(janitor.run(stop), name="retention janitor")
        try:
            if remote is None:
                await worker.run(stop)
            elif not worker.serves_any:  # every model it may take is upstream
                await remote.run(stop)
            else:
                await asyncio.gather(worker.run(stop), remote.run(stop))
        finally:
            # The loop ends by itself on ``stop``, once its attempts in flight are recorded.
            await asyncio.wait({delivering}, timeout=self.settings.webhook_timeout + 5)
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            if sweeping is not None:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping
            for stopper in stoppers:
                cancels.unsubscribe(stopper)
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def close(self) -> None:
        for renderer in {id(r): r for r in self.renderers.values()}.values():
            await renderer.close()
        for provider in self.providers.values():
            await provider.close()
        await self.blobs.close()
        await self.store.close()


def _renderer(settings: Settings) -> Renderer:
    from reelgate.renderers.preview import InstantRenderer, PreviewRenderer

    if settings.renderer == "instant":
        return InstantRenderer(settings.delays)
    return PreviewRenderer(processes=max(1, settings.workers), delays=settings.delays)


def _gpu_renderers(settings: Settings, config: Config) -> dict[str, Renderer]:
    """The diffusers renderer of the local models (none without them).

    Only processes that run workers need the ``gpu`` extra; without it they fail here.
    """
    if not config.local_models:
        return {}
    from reelgate.renderers.diffusers import DiffusersRenderer, require_gpu_extra

    if settings.workers > 0:
        require_gpu_extra()
    renderer = DiffusersRenderer(
        config.local_models,
        device=settings.device,
        renders_per_device=config.gpu.renders_per_device,
    )
    return dict.fromkeys(config.local_models, renderer)


def blob_store(settings: Settings) -> BlobStore:
    """The blob store of ``settings`` (``REELGATE_STORAGE_URL`` and the S3 options)."""
    return open_blobs(
        settings.storage_url,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        addressing_style=settings.s3_addressing_style,
    )


def build(
    settings: Settings,
    *,
    renderers: dict[str, Renderer] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Components:
    """Build the components of ``settings``; ``renderers`` overrides the default ones.

    Raises ``ConfigError`` for a bad configuration file (or a provider key not set).
    ``transport`` replaces the network under every provider (tests).
    """
    config = load_config(settings.config, models=[spec.id for spec in SEEDANCE])
    local_specs = config.local_specs()  # local models: new ids, or Seedance ids served here
    catalog = Catalog(tuple(s for s in SEEDANCE if s.id not in config.local_models) + local_specs)
    remote = config.remote_routes()
    # Only processes that run workers call providers (``serve --workers 0`` does not).
    keys = config.api_keys() if settings.workers > 0 else {}
    providers = {
        name: open_provider(name, config.providers[name], key, transport=transport)
        for name, key in keys.items()
    }
    clock: Clock = time.time
    store = open_store(settings.database_url, pool_size=settings.db_pool_size)
    blobs = blob_store(settings)
    signer = Signer(load_secret(settings.signing_secret, settings.data_dir))
    if renderers is None:
        local = [
            spec.id
            for spec in catalog
            if spec.id not in remote and spec.id not in config.local_models
        ]
        renderers = dict.fromkeys(local, _renderer(settings)) if local else {}
        renderers.update(_gpu_renderers(settings, config))
    wakeup, remote_wakeup = LocalWakeup(), LocalWakeup()

    def wake() -> None:
        wakeup.notify()
        remote_wakeup.notify()

    cancels = Cancels(store, clock, interval=settings.cancel_check)
    tasks = TaskService(
        store,
        blobs,
        catalog,
        clock,
        signer,
        public_url=settings.public_url,
        url_ttl=settings.url_ttl,
        max_image_bytes=settings.max_upload_bytes,
        wake=wake,
        on_cancel=cancels.notify,
        retain_outputs=settings.retention.outputs,
        max_queued=settings.max_queued or None,
    )
    listener = None
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        from reelgate.store.postgres import PostgresListener, PostgresStore

        assert isinstance(store, PostgresStore)
        listener = PostgresListener(settings.database_url, origin=store.origin)
    backends = {model: renderer.name for model, renderer in renderers.items()}
    backends.update({model: routes[0][0] for model, routes in remote.items() if routes})
    metrics.set_backends(backends)
    return Components(
        settings,
        store,
        blobs,
        catalog,
        clock,
        signer,
        KeyService(store, clock),
        tasks,
        renderers,
        wakeup,
        listener,
        config,
        providers,
        remote_wakeup,
        cancels=cancels,
    )
