"""Reading the dashboard's form POSTs: bounded, from this origin, with the CSRF token."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from reelgate.dashboard.session import Session, sessions
from reelgate.domain.errors import Forbidden, InvalidParameter, InvalidRequest, ReelgateError

CSRF_FIELD = "csrf"
IMAGE_FIELD = "input_reference"


async def read_form(request: Request, *, max_files: int = 0) -> FormData:
    """The POSTed form, after the origin check; its parse errors in the domain's words."""
    check_origin(request)
    try:
        return await request.form(max_files=max_files, max_fields=16, max_part_size=64 * 1024)
    except ReelgateError:  # the body limit, raised while the form streams in
        raise
    except HTTPException as exc:
        raise InvalidRequest(f"could not parse the form: {exc.detail}") from exc
    except Exception as exc:  # anything else the parsers raise: no raw text to the client
        raise InvalidRequest(f"could not parse the form ({type(exc).__name__})") from exc


async def checked_form(request: Request, session: Session, *, max_files: int = 0) -> FormData:
    """``read_form``, refused (``Forbidden``) without the session's CSRF token."""
    form = await read_form(request, max_files=max_files)
    sessions(request).check_csrf(session, form.get(CSRF_FIELD))
    return form


def check_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` names another host (SameSite's second line)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("a dashboard form may only be sent from the dashboard itself")


def text(form: FormData, name: str) -> str:
    """A text field ('' when absent); a file where text belongs is refused."""
    value = form.get(name)
    if value is None:
        return ""
    if isinstance(value, UploadFile):
        raise InvalidParameter(f"{name} must be a text field, not a file", param=name)
    return value


async def image(form: FormData) -> bytes | None:
    """The uploaded image's bytes; None when no file was chosen."""
    value = form.get(IMAGE_FIELD)
    if value is None or isinstance(value, str):
        return None
    data = await value.read()
    await value.close()
    if not data and not value.filename:  # the empty part of a file input left empty
        return None
    return data
