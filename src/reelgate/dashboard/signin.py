"""Signing in and out of the dashboard, its static assets, and its error pages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from reelgate.api.errors import STATUS
from reelgate.dashboard import pages
from reelgate.dashboard.forms import CSRF_FIELD, checked_form, read_form, text
from reelgate.dashboard.session import (
    COOKIE,
    PATH,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    SIGNIN_SECONDS,
    Session,
    clear_cookie,
    sessions,
    set_cookie,
)
from reelgate.domain.errors import (
    AuthenticationError,
    Forbidden,
    RateLimited,
    ReelgateError,
    TaskNotFound,
    Unavailable,
)
from reelgate.services.keys import KeyService, hash_key

router = APIRouter(prefix=PATH, include_in_schema=False)
HOME = PATH + "/tasks"
log = logging.getLogger("reelgate.dashboard")


async def current(request: Request) -> Session | None:
    """The request's session, or None (no cookie, or one that no longer holds)."""
    return await sessions(request).open(request.cookies.get(COOKIE))


def to_signin(request: Request) -> Response:
    """Off to the sign-in page, dropping a session cookie that no longer holds."""
    response = RedirectResponse(PATH + "/signin", status_code=303)
    if COOKIE in request.cookies:
        clear_cookie(response, request, COOKIE)
    return response


def page(
    request: Request,
    session: Session | None,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> Response:
    """A page with the frame's context: who is signed in, the form token, the nav."""
    frame = {
        "session": session,
        "owner": None if session is None else session.owner,
        "admin": session is not None and session.key.admin,
        "csrf": "" if session is None else session.csrf,
        "csrf_field": CSRF_FIELD,
        "path": request.url.path,
    }
    return pages.render(request, template, {**frame, **context}, status_code)


def status_of(exc: ReelgateError) -> int:
    """The HTTP status the API answers for ``exc`` (its one table, ``api.errors``).

    An unknown task (or another owner's) is a page that is not there: 404, where the
    API keeps CometAPI's 400 ``task_not_exist``.
    """
    if isinstance(exc, TaskNotFound):
        return 404
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)[0]


def shown(request: Request, exc: ReelgateError) -> str:
    """What a page may say of ``exc``: its message, but no server detail for a 5xx."""
    if status_of(exc) < 500:
        return exc.message
    log.warning("dashboard %s %s: %s", request.method, request.url.path, exc.message)
    return "the service is unavailable or failed; retry later"


def error_page(request: Request, session: Session | None, exc: ReelgateError) -> Response:
    """A domain error as a page, with the status (and words) the API would answer."""
    status = status_of(exc)
    context = {"message": shown(request, exc), "code": exc.code, "status": status}
    response = page(request, session, "error.html", context, status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Unavailable):
        response.headers["Retry-After"] = "5"
    return response


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in pages.STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    return pages.static(name)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    if await current(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    return _signin(request, None, 200)


def _signin(request: Request, error: str | None, status_code: int) -> Response:
    manager = sessions(request)
    nonce = manager.signin_nonce(request)
    context = {"token": manager.signin_token(nonce), "error": error}
    response = page(request, None, "signin.html", context, status_code)
    set_cookie(response, request, SIGNIN_COOKIE, nonce, SIGNIN_SECONDS)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    manager = sessions(request)
    try:
        form = await read_form(request)
        manager.check_signin(request, form.get(CSRF_FIELD))
        secret = text(form, "key").strip()
        keys: KeyService = request.app.state.keys
        await keys.authenticate(f"Bearer {secret}" if secret else None)
        key = await request.app.state.store.key_by_hash(hash_key(secret))
        if key is None or not key.active:  # revoked in the meantime
            raise AuthenticationError("this API key has been revoked")
    except AuthenticationError as exc:
        return _signin(request, exc.message, 401)
    except ReelgateError as exc:
        return _signin(request, exc.message, 403 if isinstance(exc, Forbidden) else 400)
    response = RedirectResponse(HOME, status_code=303)
    set_cookie(response, request, COOKIE, manager.issue(key), SESSION_SECONDS)
    clear_cookie(response, request, SIGNIN_COOKIE)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    try:
        await checked_form(request, session)
    except ReelgateError as exc:
        return error_page(request, session, exc)
    response = RedirectResponse(PATH + "/signin", status_code=303)
    clear_cookie(response, request, COOKIE)
    return response
