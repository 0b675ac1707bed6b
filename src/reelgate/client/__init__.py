"""reelgate's Python client: create a video task, wait for it, download the MP4.

Works against a reelgate server and against CometAPI's own ``/v1/videos``
endpoint (the same contract). It imports nothing from reelgate's server side.

::

    from reelgate.client import Client

    with Client("http://127.0.0.1:8000", api_key="rg_...") as client:
        video = client.videos.create_and_wait("a fox in the snow", model="doubao-seedance-2-0")
        client.videos.download(video, "fox.mp4")

``AsyncClient`` has the same API, awaitable. Errors form one tree, see
:mod:`reelgate.client.errors`.
"""

from reelgate.client._async import AsyncClient, AsyncVideos
from reelgate.client._base import DEFAULT_BASE_URL, Cadence, RetryPolicy
from reelgate.client._sync import Client, Videos
from reelgate.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DownloadError,
    InvalidParameter,
    MissingParameter,
    NotFoundError,
    PermissionDeniedError,
    RateLimited,
    ReelgateError,
    ServerError,
    TaskFailed,
    TaskNotFound,
    WaitTimeout,
)
from reelgate.client.models import (
    TERMINAL_STATUSES,
    Video,
    VideoError,
    VideoStatus,
    is_failure,
    is_terminal,
    normalize_status,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "TERMINAL_STATUSES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncVideos",
    "AuthenticationError",
    "BadRequestError",
    "Cadence",
    "Client",
    "DownloadError",
    "InvalidParameter",
    "MissingParameter",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimited",
    "ReelgateError",
    "RetryPolicy",
    "ServerError",
    "TaskFailed",
    "TaskNotFound",
    "Video",
    "VideoError",
    "VideoStatus",
    "Videos",
    "WaitTimeout",
    "is_failure",
    "is_terminal",
    "normalize_status",
]
