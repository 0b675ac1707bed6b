"""FastAPI dependencies for the signed-in key: any key, or an admin's.

``videos.current_owner`` stays the dependency of the routes that need only the owner;
the create routes take the whole key (its limits), the admin routes an admin key.
"""

from __future__ import annotations

from fastapi import Request

from reelgate.domain.task import ApiKey
from reelgate.services.keys import KeyService


async def current_key(request: Request) -> ApiKey:
    """The active key of the request's bearer header (401 otherwise)."""
    keys: KeyService = request.app.state.keys
    return await keys.identify(request.headers.get("authorization"))


async def current_admin(request: Request) -> ApiKey:
    """The request's key when it is an admin's: 401 without a valid key, 403 for a user's."""
    keys: KeyService = request.app.state.keys
    return await keys.admin(request.headers.get("authorization"))
