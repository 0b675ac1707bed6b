"""Every error as JSON in CometAPI's envelope; domain errors map to HTTP in one table."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from reelgate.domain import errors as e

log = logging.getLogger("reelgate.api")

# class -> (HTTP status, envelope type); the most specific class wins (MRO order).
STATUS: dict[type[e.ReelgateError], tuple[int, str]] = {
    e.ReelgateError: (500, "server_error"),
    e.InvalidRequest: (400, "invalid_request_error"),
    e.InvalidParameter: (400, "invalid_request_error"),
    e.MissingParameter: (400, "invalid_request_error"),
    e.UnsupportedTaskType: (400, "invalid_request_error"),
    e.HostUnresolvable: (400, "invalid_request_error"),
    e.TaskNotFound: (400, "invalid_request_error"),
    e.AuthenticationError: (401, "authentication_error"),
    e.Forbidden: (403, "permission_error"),
    e.NotFound: (404, "not_found_error"),
    e.FilesExpired: (410, "not_found_error"),
    e.PayloadTooLarge: (413, "invalid_request_error"),
    e.UnsupportedMediaType: (415, "invalid_request_error"),
    e.RateLimited: (429, "rate_limit_error"),
    e.Conflict: (409, "conflict_error"),
    e.IllegalTransition: (409, "conflict_error"),
    e.LeaseLost: (409, "conflict_error"),
    e.TaskNotCancellable: (409, "invalid_request_error"),
    e.ContentNotReady: (409, "invalid_request_error"),
    e.IdempotencyConflict: (409, "invalid_request_error"),
    e.Unavailable: (503, "service_unavailable"),
    e.RenderError: (500, "server_error"),
    e.RenderRejected: (500, "server_error"),
    # Upstream errors end tasks; they are never a request's answer, but stay mapped.
    e.UpstreamError: (502, "server_error"),
    e.UpstreamRefused: (502, "server_error"),
    e.UpstreamBusy: (503, "service_unavailable"),
    e.UpstreamUncertain: (502, "server_error"),
    e.UpstreamGone: (502, "server_error"),
}


def envelope(
    status: int,
    message: str,
    *,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in CometAPI's shape."""
    message = _encodable(message)
    param = None if param is None else _encodable(param)
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _encodable(text: str) -> str:
    """``text`` as UTF-8 can carry it.

    A lone surrogate that a client sent (a JSON ``\\ud800`` escape) and that a message
    or ``param`` echoes is shown escaped, so that the answer is still valid JSON.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.ReelgateError)
    status, type_ = next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)
    headers = {}
    if isinstance(exc, e.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, e.Unavailable):
        headers["Retry-After"] = "5"
    message = exc.message
    if status >= 500:  # the detail (paths, driver messages) goes to the log only
        request_id = request.scope.get("state", {}).get("request_id", "unknown")
        log.warning(
            "%s %s (request %s): %s", request.method, request.url.path, request_id, exc.message
        )
        what = "the database or storage is unavailable" if status == 503 else "server error"
        message = f"{what}; retry later (request id {request_id})"
    return envelope(status, message, type_=type_, code=exc.code, param=exc.param, headers=headers)


def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
        return envelope(404, message, type_="not_found_error", code="not_found")
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        return envelope(
            405,
            message,
            type_="invalid_request_error",
            code="method_not_allowed",
            headers=dict(exc.headers or {}),
        )
    return envelope(exc.status_code, str(exc.detail), type_="invalid_request_error", code=None)


def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = str(first.get("loc", ["", ""])[-1]) or None
    return envelope(
        400,
        f"{param}: {first.get('msg', 'invalid request')}",
        type_="invalid_request_error",
        code="InvalidParameter",
        param=param,
    )


def unexpected_error(request_id: str) -> JSONResponse:
    """The 500 answer: no traceback, the request id in the message."""
    return envelope(
        500,
        f"internal server error (request id {request_id})",
        type_="server_error",
        code="internal_error",
    )


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (unexpected errors: ``middleware.RequestId``)."""
    app.add_exception_handler(e.ReelgateError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
