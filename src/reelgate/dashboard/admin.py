"""The dashboard's admin pages: keys (create, change role and limits, revoke), usage, health.

Only a session of an admin key sees them; any other gets the 403 page. Each page
calls the service the admin API calls (``KeyService``, ``UsageService``) or the
checks ``/readyz`` makes, so the dashboard and ``/v1/admin/*`` cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from reelgate.api import health
from reelgate.api.videos import list_models
from reelgate.config import Config
from reelgate.dashboard.forms import checked_form, text
from reelgate.dashboard.session import PATH, Session
from reelgate.dashboard.signin import current, error_page, page, shown, status_of, to_signin
from reelgate.dashboard.usage import usage_page
from reelgate.domain.errors import Forbidden, InvalidParameter, ReelgateError
from reelgate.domain.quotas import LIMIT_NAMES, Limits, Role, check_limit
from reelgate.domain.status import Phase
from reelgate.ports import TaskStore
from reelgate.services.keys import KeyService

router = APIRouter(prefix=PATH + "/admin", include_in_schema=False)
KEYS = PATH + "/admin/keys"


async def _admin(request: Request) -> Session | Response:
    """The admin's session; else the sign-in redirect or the 403 page to answer."""
    session = await current(request)
    if session is None:
        return to_signin(request)
    if not session.key.admin:
        refused = Forbidden("these pages are for admin keys", code="admin_required")
        return error_page(request, session, refused)
    return session


@router.get("")
@router.get("/")
async def admin_home(request: Request) -> Response:
    return RedirectResponse(KEYS, status_code=303)


@router.get("/keys")
async def keys_page(request: Request) -> Response:
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    return await _keys(request, session, {})


async def _keys(
    request: Request, session: Session, extra: dict[str, Any], status_code: int = 200
) -> Response:
    keys: KeyService = request.app.state.keys
    listed = sorted(await keys.list(), key=lambda key: (not key.active, -key.created_at))
    context = {
        "keys": listed,
        "limit_names": LIMIT_NAMES,
        "revoked": request.query_params.get("revoked"),
        "updated": request.query_params.get("updated"),
        "edited": None,
        "edit_error": None,
        "created": None,
        "secret": None,
        "error": None,
        "form": {},
        **extra,
    }
    return page(request, session, "admin_keys.html", context, status_code)


@router.post("/keys")
async def create_key(request: Request) -> Response:
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    keys: KeyService = request.app.state.keys
    values: dict[str, str] = {}
    try:
        form = await checked_form(request, session)
        values = {name: text(form, name) for name in ("owner", "name", "role", *LIMIT_NAMES)}
        key, secret = await keys.create(
            values["owner"], values["name"], role=_role(form) or Role.USER, limits=_limits(form)
        )
    except ReelgateError as exc:
        extra = {"error": shown(request, exc), "form": values}
        return await _keys(request, session, extra, status_of(exc))
    return await _keys(request, session, {"created": key, "secret": secret})


@router.post("/keys/{key_id}/update")
async def update_key(key_id: str, request: Request) -> Response:
    """Set a key's role and its three limits (an empty field clears one), as PATCH does."""
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    keys: KeyService = request.app.state.keys
    try:
        form = await checked_form(request, session)
        role = _role(form)
        if key_id == session.key.id and role is Role.USER:
            raise InvalidParameter(
                "this is the key you are signed in with: demote it from another admin key",
                param="role",
            )
        await keys.update(key_id, limits=_limits(form), role=role)
    except ReelgateError as exc:
        extra = {"edit_error": shown(request, exc), "edited": key_id}
        return await _keys(request, session, extra, status_of(exc))
    return RedirectResponse(f"{KEYS}?updated={key_id}", status_code=303)


def _role(form: FormData) -> Role | None:
    """The form's role; None when the field is empty."""
    role = text(form, "role")
    if role and role not in (Role.USER.value, Role.ADMIN.value):
        raise InvalidParameter("role must be admin or user", param="role")
    return Role(role) if role else None


def _limits(form: FormData) -> Limits:
    """The form's limits: an empty field is no limit; else a whole number (0 or more)."""
    given: dict[str, int | None] = {}
    for name in LIMIT_NAMES:
        value = text(form, name).strip()
        if value and not (value.isascii() and value.isdigit() and len(value) <= 12):
            raise InvalidParameter(f"{name} must be empty or a whole number", param=name)
        given[name] = check_limit(name, int(value) if value else None)
    return Limits(**given)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> Response:
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    keys: KeyService = request.app.state.keys
    try:
        await checked_form(request, session)
        await keys.revoke(key_id)
    except ReelgateError as exc:
        return error_page(request, session, exc)
    return RedirectResponse(f"{KEYS}?revoked={key_id}", status_code=303)


@router.get("/usage")
async def usage_of_every_owner(request: Request) -> Response:
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    return await usage_page(request, session, every_owner=True)


@router.get("/health")
async def health_page(request: Request) -> Response:
    session = await _admin(request)
    if not isinstance(session, Session):
        return session
    store: TaskStore = request.app.state.store
    config: Config = request.app.state.config
    ready, why = True, ""
    try:
        await health.readyz(request)  # the checks of /readyz, in this process
    except ReelgateError as exc:
        ready, why = False, shown(request, exc)
    try:
        depth = await store.queue_depth()
        usage = await store.storage_usage()
        now = request.app.state.clock()
        pollers = [(name, until, until >= now) for name, until in await store.list_pollers()]
    except ReelgateError as exc:
        return error_page(request, session, exc)
    models = json.loads(bytes((await list_models(request, session.owner)).body))["data"]
    context = {
        "ready": ready,
        "why": why,
        "depth": [(phase.value, depth.get(phase, 0)) for phase in Phase if phase is not Phase.DONE],
        "queued": sum(depth.values()),
        "usage": usage,
        "pollers": pollers,
        "providers": [
            (name, provider.kind, provider.region or "")
            for name, provider in config.providers.items()
        ],
        "models": models,
        "settings": request.app.state.settings,
    }
    return page(request, session, "admin_health.html", context)
