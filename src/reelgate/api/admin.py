"""The admin API of keys: create (with a role and limits), list, read, change, revoke.

Every route needs an admin key (403 ``admin_required`` for a user's). Bodies are JSON
objects; a field outside the documented ones is refused, so that a typo in a limit's
name never passes silently as "no limit".
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from reelgate.api.auth import current_admin
from reelgate.api.videos import json_response
from reelgate.domain.errors import InvalidParameter, InvalidRequest, UnsupportedMediaType
from reelgate.domain.quotas import LIMIT_NAMES, Limits, Role, check_limit
from reelgate.domain.task import ApiKey
from reelgate.services.keys import KeyService

router = APIRouter(prefix="/v1/admin", tags=["Admin"])

_CREATE_FIELDS = frozenset({"owner", "name", "role", "limits"})
_UPDATE_FIELDS = frozenset({"name", "role", "limits"})


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as the admin API shows it (never its secret or hash)."""
    return {
        "id": key.id,
        "object": "api_key",
        "owner": key.owner,
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role.value,
        "limits": key.limits.as_dict(),
        "created_at": int(key.created_at),
        "revoked_at": None if key.revoked_at is None else int(key.revoked_at),
        "active": key.active,
    }


@router.post("/keys", summary="Admin: create an API key (its secret is shown only here)")
async def create_key(request: Request, admin: ApiKey = Depends(current_admin)) -> Response:
    keys: KeyService = request.app.state.keys
    body = await _body(request, _CREATE_FIELDS)
    owner = body.get("owner")
    if not isinstance(owner, str):
        raise InvalidParameter("owner must be a string naming who owns the tasks", param="owner")
    key, secret = await keys.create(
        owner,
        _name(body.get("name", "")) or "",
        role=_role(body.get("role", Role.USER.value)),
        limits=_limits(body.get("limits", {}), Limits()),
    )
    return json_response({**key_json(key), "secret": secret})


@router.get("/keys", summary="Admin: list every API key, oldest first")
async def list_keys(request: Request, admin: ApiKey = Depends(current_admin)) -> Response:
    keys: KeyService = request.app.state.keys
    return json_response({"object": "list", "data": [key_json(k) for k in await keys.list()]})


@router.get("/keys/{key_id}", summary="Admin: read an API key")
async def get_key(
    key_id: str, request: Request, admin: ApiKey = Depends(current_admin)
) -> Response:
    keys: KeyService = request.app.state.keys
    return json_response(key_json(await keys.get(key_id)))


@router.patch("/keys/{key_id}", summary="Admin: change a key's name, role or limits")
async def update_key(
    key_id: str, request: Request, admin: ApiKey = Depends(current_admin)
) -> Response:
    keys: KeyService = request.app.state.keys
    body = await _body(request, _UPDATE_FIELDS)
    current = await keys.get(key_id)
    role = body.get("role")
    key = await keys.update(
        key_id,
        name=_name(body.get("name")),
        role=None if role is None else _role(role),
        limits=_limits(body["limits"], current.limits) if "limits" in body else None,
    )
    return json_response(key_json(key))


@router.delete("/keys/{key_id}", summary="Admin: revoke a key (requests with it get 401)")
async def revoke_key(
    key_id: str, request: Request, admin: ApiKey = Depends(current_admin)
) -> Response:
    keys: KeyService = request.app.state.keys
    return json_response(key_json(await keys.revoke(key_id)))


async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"the body is not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidParameter(
            f"unknown field {unknown[0][:40]!r}; allowed: {', '.join(sorted(allowed))}",
            param=unknown[0][:40],
        )
    return body


def _name(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter("name must be a string", param="name")
    return value


def _role(value: object) -> Role:
    if value not in (Role.ADMIN.value, Role.USER.value):
        raise InvalidParameter("role must be 'admin' or 'user'", param="role")
    return Role(str(value))


def _limits(value: object, current: Limits) -> Limits:
    """``current`` with the limits ``value`` names (null clears one; absent keeps it)."""
    if not isinstance(value, dict):
        raise InvalidParameter("limits must be an object", param="limits")
    unknown = sorted(set(value) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidParameter(
            f"unknown limit {unknown[0][:40]!r}; limits are {', '.join(LIMIT_NAMES)}",
            param="limits",
        )
    merged = current.as_dict()
    for name, limit in value.items():
        merged[name] = check_limit(name, limit)
    return Limits(**merged)
