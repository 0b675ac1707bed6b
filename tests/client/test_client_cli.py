"""The client commands against the stand-in: output, --json, and every documented exit code."""

from __future__ import annotations

import functools
import io
import json
import socket
from pathlib import Path

import pytest
import typer
from fakeserver import FakeServer
from rich.console import Console
from typer.testing import CliRunner

from reelgate.client import Client, Video
from reelgate.client import cli as client_cli

MODEL = "doubao-seedance-2-0-fast"


@pytest.fixture
def run(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REELGATE_BASE_URL", fake_server.base_url)
    monkeypatch.setenv("REELGATE_API_KEY", fake_server.api_key)
    return CliRunner()


def app() -> typer.Typer:
    root = typer.Typer()
    client_cli.register(root)
    return root


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_register_adds_the_four_commands() -> None:
    names = {command.name for command in app().registered_commands}
    assert names == {"create", "status", "wait", "download"}


def test_create_prints_the_id_and_status_reads_it(run: CliRunner) -> None:
    code, out, _ = invoke(run, "create", "a fox", "--model", MODEL)
    task_id = out.strip()
    assert code == 0 and task_id.startswith("task_")
    code, out, _ = invoke(run, "status", task_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "IN_PROGRESS"
    code, out, _ = invoke(run, "status", task_id)
    assert code == 0 and out.startswith(f"{task_id}  IN_PROGRESS")


def test_create_wait_and_save(run: CliRunner, fake_server: FakeServer, tmp_path: Path) -> None:
    target = tmp_path / "fox.mp4"
    args = [
        "create",
        "a fox",
        "-m",
        MODEL,
        "--seconds",
        "5",
        "--size",
        "9:16",
        "--resolution",
        "480p",
    ]
    code, out, err = invoke(run, *args, "-o", str(target), "--poll-interval", "0.05", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "SUCCESS" and data["path"] == str(target)
    assert target.read_bytes() == fake_server.video
    assert fake_server.tasks[data["id"]].fields["size"] == "9:16"


def test_wait_then_download(run: CliRunner, fake_server: FakeServer, tmp_path: Path) -> None:
    task_id = invoke(run, "create", "a fox", "--model", MODEL)[1].strip()
    code, out, _ = invoke(run, "wait", task_id, "--poll-interval", "0.05")
    assert code == 0 and "SUCCESS  100%" in out and "/files/" in out
    code, out, _ = invoke(run, "download", task_id, "-o", str(tmp_path))
    assert code == 0 and Path(out.strip()) == tmp_path / f"{task_id}.mp4"
    code, out, _ = invoke(run, "download", task_id, "-o", str(tmp_path / "b.mp4"), "--json")
    assert json.loads(out)["bytes"] == len(fake_server.video)


def test_create_sends_the_image(run: CliRunner, fake_server: FakeServer, tmp_path: Path) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    code, out, _ = invoke(run, "create", "moving", "--model", MODEL, "--image", str(image))
    assert code == 0 and fake_server.tasks[out.strip()].image is not None


@pytest.mark.parametrize(
    ("prompt", "expected", "status"),
    [
        ("a fox [fail]", client_cli.EXIT_FAILED, "FAILED"),
        ("a fox [error]", client_cli.EXIT_ERROR, "ERROR"),
    ],
)
def test_failed_tasks_have_their_own_exit_codes(
    run: CliRunner, prompt: str, expected: int, status: str
) -> None:
    code, out, err = invoke(
        run, "create", prompt, "--model", MODEL, "--wait", "--poll-interval", "0.05", "--json"
    )
    assert code == expected
    assert json.loads(out)["status"] == status and json.loads(out)["error"]["message"]
    assert "error:" in err


def test_error_exit_codes(
    run: CliRunner, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke(run, "status", "task_nope", "--json")
    assert code == client_cli.EXIT_NOT_FOUND
    assert (
        json.loads(out)["error"]["type"] == "TaskNotFound"
        and json.loads(out)["error"]["request_id"]
    )
    assert (
        invoke(run, "create", "x", "--model", MODEL, "--size", "2:1")[0] == client_cli.EXIT_INVALID
    )
    assert invoke(run, "create", " ", "--model", MODEL)[0] == client_cli.EXIT_INVALID
    assert invoke(run, "status", "t", "--api-key", "wrong")[0] == client_cli.EXIT_AUTH
    fake_server.steps = 10_000
    task_id = invoke(run, "create", "slow", "--model", MODEL)[1].strip()
    timed_out = invoke(run, "wait", task_id, "--timeout", "0.2", "--poll-interval", "0.05")
    assert timed_out[0] == client_cli.EXIT_TIMEOUT
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(client_cli, "Client", functools.partial(Client, max_retries=0))
    assert invoke(run, "status", "t", "--base-url", closed)[0] == client_cli.EXIT_CONNECTION
    fake_server.fail_next(500, count=5)
    assert invoke(run, "status", "t")[0] == client_cli.EXIT_OTHER
    assert invoke(run, "status", "t", "--base-url", "ftp://x")[0] == client_cli.EXIT_USAGE
    assert invoke(run, "create", "no model")[0] == client_cli.EXIT_USAGE


def test_progress_bar_only_on_a_terminal() -> None:
    with client_cli.progress_display(False, Console(file=io.StringIO())) as update:
        assert update is None
    with client_cli.progress_display(
        True, Console(file=io.StringIO(), force_terminal=True)
    ) as update:
        assert update is None
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with client_cli.progress_display(False, console) as update:
        assert update is not None
        update(Video(id="task_1", status="IN_PROGRESS", progress=40))
    assert "task_1 IN_PROGRESS" in screen.getvalue() and "40%" in screen.getvalue()
