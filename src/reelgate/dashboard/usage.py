"""The dashboard's usage pages: the signed-in key's own owner, and every owner (admins).

Both read ``UsageService`` as ``GET /v1/usage`` and ``GET /v1/admin/usage`` do and
render one template, so a page and the API always show the same figures. The owner's
page fixes the owner to the session's: a query naming another owner is ignored, as
``/v1/usage`` has no ``owner`` parameter either.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelgate.dashboard.session import PATH, Session
from reelgate.dashboard.signin import current, page, shown, to_signin
from reelgate.domain.errors import ReelgateError
from reelgate.services.usage import UsageService

router = APIRouter(prefix=PATH, include_in_schema=False)
OWN = PATH + "/usage"
EVERY_OWNER = PATH + "/admin/usage"


@router.get("/usage")
async def own_usage(request: Request) -> Response:
    session = await current(request)
    if session is None:
        return to_signin(request)
    return await usage_page(request, session, every_owner=False)


async def usage_page(request: Request, session: Session, *, every_owner: bool) -> Response:
    """Usage over ``?from=&to=&model=``: of every owner (``&owner=``) or the session's."""
    usage: UsageService = request.app.state.usage
    names = ("from", "to", "owner", "model") if every_owner else ("from", "to", "model")
    chosen = {name: request.query_params.get(name, "").strip() for name in names}
    owner = (chosen["owner"] or None) if every_owner else session.owner
    report, error = None, None
    try:
        start, end = usage.parse_range(chosen["from"] or None, chosen["to"] or None)
        found = await usage.report(start=start, end=end, owner=owner, model=chosen["model"] or None)
        report = found.as_json()
    except ReelgateError as exc:
        error = shown(request, exc)
    context = {
        "report": report,
        "chosen": chosen,
        "error": error,
        "every_owner": every_owner,
        "action": EVERY_OWNER if every_owner else OWN,
    }
    return page(request, session, "usage.html", context, 400 if error else 200)
