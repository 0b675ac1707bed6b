"""Remote backends: adapters for upstream providers, one module each.

``open_provider`` builds the adapter of a configured provider. Every adapter
implements ``reelgate.ports.Provider`` over ``HttpProvider`` (``http.py``), so an
httpx transport can replace the network in tests.
"""

from __future__ import annotations

import httpx

from reelgate.config import ProviderConfig
from reelgate.ports import Provider


def open_provider(
    name: str,
    config: ProviderConfig,
    api_key: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    """The adapter for ``config.kind`` (``ark``, ``cometapi`` or ``openai``)."""
    if config.kind == "ark":
        from reelgate.backends.remote.ark import ArkProvider

        return ArkProvider(name, config, api_key, transport=transport)
    if config.kind == "cometapi":
        from reelgate.backends.remote.cometapi import CometApiProvider

        return CometApiProvider(name, config, api_key, transport=transport)
    if config.kind == "openai":
        from reelgate.backends.remote.openai_style import OpenAiStyleProvider

        return OpenAiStyleProvider(name, config, api_key, transport=transport)
    raise ValueError(f"provider {name!r}: {config.kind!r} is not a remote kind")
