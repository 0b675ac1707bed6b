"""The client half of the ``reelgate`` command: ``create``, ``status``, ``wait``, ``download``.

:func:`register` adds these commands to the root ``reelgate`` app. Exit codes
(also in ``docs/client.md``):

====  =========================================================
code  meaning
====  =========================================================
0     success
1     any other error (5xx or 429 after the retries, a bad download)
2     wrong command-line usage
3     the task ended FAILED
4     the task ended ERROR
5     no such task (``task_not_exist``)
6     authentication failed (401)
7     invalid or missing parameter (400)
8     timed out (the wait, or a request)
9     could not connect to the server
====  =========================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from reelgate.client import errors
from reelgate.client._base import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
)
from reelgate.client._sync import Client
from reelgate.client.models import Video

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_ERROR = 4
EXIT_NOT_FOUND = 5
EXIT_AUTH = 6
EXIT_INVALID = 7
EXIT_TIMEOUT = 8
EXIT_CONNECTION = 9

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", envvar=ENV_BASE_URL, help="Server root URL.", show_default=False),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar=ENV_API_KEY, help="Bearer key.", show_default=False),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, for scripts.")]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Save the MP4 here (a file or a folder).")
]
Timeout = Annotated[float, typer.Option(help="Give up waiting after this many seconds.")]
PollInterval = Annotated[float, typer.Option(help="Seconds between polls (plus jitter).")]
TaskId = Annotated[str, typer.Argument(help="The task id returned by create.")]


def exit_code(exc: errors.ReelgateError) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, errors.TaskFailed):
        return EXIT_ERROR if exc.task_status == "ERROR" else EXIT_FAILED
    table: list[tuple[type[errors.ReelgateError], int]] = [
        (errors.TaskNotFound, EXIT_NOT_FOUND),
        (errors.AuthenticationError, EXIT_AUTH),
        (errors.BadRequestError, EXIT_INVALID),
        (errors.WaitTimeout, EXIT_TIMEOUT),
        (errors.APITimeoutError, EXIT_TIMEOUT),
        (errors.APIConnectionError, EXIT_CONNECTION),
    ]
    return next((code for cls, code in table if isinstance(exc, cls)), EXIT_OTHER)


def _video_json(video: Video, **extra: Any) -> str:
    return json.dumps({**video.model_dump(mode="json"), **extra})


def _error_json(exc: errors.ReelgateError) -> str:
    detail = {
        "type": type(exc).__name__,
        "message": exc.message,
        "status": exc.status,
        "code": exc.code,
        "request_id": exc.request_id,
    }
    return json.dumps({"error": detail})


def _describe(video: Video) -> str:
    line = f"{video.id}  {video.status}  {video.progress}%"
    if video.video_url:
        line += f"\n{video.video_url}"
    if video.error is not None:
        line += f"\nerror: {video.error.code or ''} {video.error.message or ''}".rstrip()
    return line


@contextmanager
def _reported(as_json: bool) -> Iterator[None]:
    """Turn client errors into a message and the documented exit code."""
    try:
        yield
    except errors.ReelgateError as exc:
        if isinstance(exc, errors.TaskFailed):
            typer.echo(_video_json(exc.video) if as_json else _describe(exc.video))
        elif as_json:
            typer.echo(_error_json(exc))
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except ValueError as exc:  # a malformed base URL or task id
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@contextmanager
def progress_display(
    as_json: bool, console: Console | None = None
) -> Iterator[Callable[[Video], None] | None]:
    """A rich progress bar on stderr while waiting, when stderr is a terminal and not --json.

    Yields the ``on_progress`` callback to pass to ``wait`` (``None``: no bar).
    """
    console = console or Console(stderr=True)
    if as_json or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("waiting", total=100)

        def update(video: Video) -> None:
            bar.update(task, completed=video.progress, description=f"{video.id} {video.status}")

        yield update


def _wait_and_save(
    client: Client,
    task_id: str,
    output: Path | None,
    *,
    timeout: float,
    poll_interval: float,
    as_json: bool,
) -> None:
    with progress_display(as_json) as on_progress:
        video = client.videos.wait(
            task_id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress
        )
    if output is None:
        typer.echo(_video_json(video) if as_json else _describe(video))
        return
    path = client.videos.download(video, output)
    typer.echo(_video_json(video, path=str(path)) if as_json else f"{_describe(video)}\n{path}")


def create(
    prompt: Annotated[str, typer.Argument(help="What the video should show.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model id, e.g. doubao-seedance-2-0.")
    ],
    seconds: Annotated[int | None, typer.Option(help="Duration in seconds.")] = None,
    size: Annotated[str | None, typer.Option(help="Aspect ratio, e.g. 16:9.")] = None,
    resolution: Annotated[str | None, typer.Option(help="e.g. 480p, 720p.")] = None,
    image: Annotated[
        Path | None, typer.Option(help="Reference image (image-to-video).", exists=True)
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the task ends.")] = False,
    output: Output = None,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
    poll_interval: PollInterval = DEFAULT_POLL_INTERVAL,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a video task; with --wait (or -o) wait for it, and save it with -o."""
    with _reported(as_json), Client(base_url, api_key) as client:
        video = client.videos.create(
            prompt,
            model=model,
            seconds=seconds,
            size=size,
            resolution=resolution,
            input_reference=image,
        )
        if not (wait or output):
            typer.echo(_video_json(video) if as_json else video.id)
            return
        typer.echo(f"created {video.id}", err=True)
        _wait_and_save(
            client, video.id, output, timeout=timeout, poll_interval=poll_interval, as_json=as_json
        )


def status(
    task_id: TaskId, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: JsonOutput = False
) -> None:
    """Show a task's status, progress and, once done, its video URL."""
    with _reported(as_json), Client(base_url, api_key) as client:
        video = client.videos.retrieve(task_id)
        typer.echo(_video_json(video) if as_json else _describe(video))


def wait(
    task_id: TaskId,
    output: Output = None,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
    poll_interval: PollInterval = DEFAULT_POLL_INTERVAL,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: JsonOutput = False,
) -> None:
    """Wait until a task ends; exit 0 on SUCCESS (saving it with -o), 3 on FAILED, 4 on ERROR."""
    with _reported(as_json), Client(base_url, api_key) as client:
        _wait_and_save(
            client, task_id, output, timeout=timeout, poll_interval=poll_interval, as_json=as_json
        )


def download(
    task_id: TaskId,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to save the MP4.")],
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: JsonOutput = False,
) -> None:
    """Download a finished task's MP4 (resuming and refreshing its URL as needed)."""
    with _reported(as_json), Client(base_url, api_key) as client:
        path = client.videos.download(task_id, output)
        size = path.stat().st_size
        typer.echo(
            json.dumps({"id": task_id, "path": str(path), "bytes": size}) if as_json else str(path)
        )


def register(app: typer.Typer) -> None:
    """Add ``create``, ``status``, ``wait`` and ``download`` to the root ``reelgate`` app."""
    app.command("create")(create)
    app.command("status")(status)
    app.command("wait")(wait)
    app.command("download")(download)


def main() -> None:
    """Run the client commands alone (``python -m reelgate.client.cli``)."""
    app = typer.Typer(
        help="reelgate client: create, wait for and download videos.", add_completion=False
    )
    register(app)
    app()


if __name__ == "__main__":
    main()
