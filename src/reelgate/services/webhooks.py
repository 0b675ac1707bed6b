"""The webhook use cases: an owner's endpoints, the delivery log, the callback secret."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping

from reelgate.domain.errors import InvalidParameter, NotFound
from reelgate.domain.webhooks import (
    MAX_ENDPOINTS,
    Delivery,
    Endpoint,
    check_webhook_url,
    new_secret,
    secret_of,
)
from reelgate.ports import Clock, HookStore
from reelgate.services.addresses import AddressGuard
from reelgate.services.signing import Signer

DESCRIPTION_MAX = 200
ENDPOINT_FIELDS = ("url", "description")


class WebhookService:
    """Endpoints (each with its own secret, shown once), deliveries, the callback secret."""

    def __init__(self, store: HookStore, clock: Clock, guard: AddressGuard, signer: Signer) -> None:
        self.store = store
        self.guard = guard
        self._clock = clock
        self._signer = signer

    async def check_url(self, url: object, param: str) -> str:
        """A webhook URL that is well formed and resolves to permitted addresses only."""
        checked = check_webhook_url(url, param)
        await self.guard.check(checked, param=param)
        return checked

    async def create_endpoint(self, owner: str, fields: Mapping[str, object]) -> Endpoint:
        """A new endpoint of ``owner`` from ``{"url", "description"?}``; its secret is new."""
        unknown = sorted(set(fields) - set(ENDPOINT_FIELDS))
        if unknown:
            raise InvalidParameter(
                f"unknown parameter {unknown[0][:40]!r}; allowed: url, description",
                param=unknown[0][:40],
            )
        description = fields.get("description", "")
        if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
            raise InvalidParameter(
                f"description must be text of at most {DESCRIPTION_MAX} characters",
                param="description",
            )
        if not description.isprintable():
            raise InvalidParameter("description must be printable text", param="description")
        url = await self.check_url(fields.get("url"), "url")
        if len(await self.store.list_endpoints(owner)) >= MAX_ENDPOINTS:
            raise InvalidParameter(
                f"at most {MAX_ENDPOINTS} webhook endpoints per owner; delete one first",
                param="url",
            )
        endpoint = Endpoint(
            "wh_" + secrets.token_hex(12), owner, url, new_secret(), self._clock(), description
        )
        await self.store.add_endpoint(endpoint)
        return endpoint

    async def list_endpoints(self, owner: str) -> list[Endpoint]:
        return await self.store.list_endpoints(owner)

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> None:
        """Delete the owner's endpoint (pending deliveries to it are dropped); ``NotFound``."""
        if not endpoint_id.isascii() or not await self.store.delete_endpoint(owner, endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id[:80]!r} of yours")

    async def deliveries(
        self, owner: str, *, task_id: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """The owner's deliveries, newest first (of one task, if named)."""
        if task_id is not None and not task_id.isascii():
            return []
        return await self.store.list_deliveries(owner, task_id=task_id, limit=limit)

    def callback_secret(self, owner: str) -> str:
        """The secret that signs deliveries to ``owner``'s tasks' ``callback_url``.

        Derived from the server's signing key: stable across processes, never stored.
        """
        mac = self._signer.signature(f"webhook-callbacks/{owner}", 0)
        return secret_of(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)))
