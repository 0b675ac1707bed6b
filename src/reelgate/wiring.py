"""The one place that picks concrete adapters from settings and wires the services."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from reelgate.blobs import open_blobs
from reelgate.domain.catalog import Catalog
from reelgate.ports import BlobStore, Clock, Listener, Renderer, TaskStore
from reelgate.services.keys import KeyService
from reelgate.services.signing import Signer, load_secret
from reelgate.services.tasks import TaskService
from reelgate.settings import Settings
from reelgate.store import open_store
from reelgate.worker.runner import Worker, WorkerConfig
from reelgate.worker.wakeup import LocalWakeup


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
        )
        (self.settings.data_dir / "scratch").mkdir(parents=True, exist_ok=True)
        return Worker(self.store, self.blobs, self.renderers, self.clock, self.wakeup, config)

    async def run_worker(self, stop: asyncio.Event, worker: Worker | None = None) -> None:
        """Run ``worker`` (default: ``self.worker()``) until ``stop``, woken by the listener."""
        worker = worker or self.worker()
        listening = None
        if self.listener is not None:
            listening = asyncio.create_task(self.listener.run(self.wakeup.notify))
        try:
            await worker.run(stop)
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def close(self) -> None:
        for renderer in {id(r): r for r in self.renderers.values()}.values():
            await renderer.close()
        await self.blobs.close()
        await self.store.close()


def _renderer(settings: Settings) -> Renderer:
    from reelgate.renderers.preview import InstantRenderer, PreviewRenderer

    if settings.renderer == "instant":
        return InstantRenderer(settings.delays)
    return PreviewRenderer(processes=max(1, settings.workers), delays=settings.delays)


def build(settings: Settings, *, renderers: dict[str, Renderer] | None = None) -> Components:
    """Build the components of ``settings``; ``renderers`` overrides the default ones."""
    catalog = Catalog()
    clock: Clock = time.time
    store = open_store(settings.database_url, pool_size=settings.db_pool_size)
    blobs = open_blobs(
        settings.storage_url,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        addressing_style=settings.s3_addressing_style,
    )
    signer = Signer(load_secret(settings.signing_secret, settings.data_dir))
    if renderers is None:
        renderers = dict.fromkeys((spec.id for spec in catalog), _renderer(settings))
    wakeup = LocalWakeup()
    tasks = TaskService(
        store,
        blobs,
        catalog,
        clock,
        signer,
        public_url=settings.public_url,
        url_ttl=settings.url_ttl,
        max_image_bytes=settings.max_upload_bytes,
        wake=wakeup.notify,
    )
    listener = None
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        from reelgate.store.postgres import PostgresListener, PostgresStore

        assert isinstance(store, PostgresStore)
        listener = PostgresListener(settings.database_url, origin=store.origin)
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
    )
