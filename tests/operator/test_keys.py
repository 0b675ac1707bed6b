"""Admin and user keys: the admin API, the CLI, the first key, and the upgrade of old keys."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from reelgate.cli import app
from reelgate.domain.errors import NotFound
from reelgate.domain.quotas import Limits, Role
from reelgate.ports import TaskStore
from reelgate.services.keys import KeyService, ensure_first_key
from reelgate.store import sql
from reelgate.store.sqlite import SqliteStore, _statements
from tests.server import LiveServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("keys")), workers=0, url_ttl=60)
    yield live
    live.stop()


def _admin(server: LiveServer) -> dict[str, str]:
    _, secret = server.call(server.components.keys.create("ops", role=Role.ADMIN))
    return {"Authorization": f"Bearer {secret}"}


def test_admin_api_creates_lists_changes_and_revokes(server: LiveServer) -> None:
    admin, base = _admin(server), f"{server.base_url}/v1/admin/keys"
    made = httpx.post(
        base,
        json={"owner": "team-a", "name": "ci", "limits": {"rate_per_minute": 10}},
        headers=admin,
    )
    assert made.status_code == 200, made.text
    key = made.json()
    assert key["role"] == "user" and key["active"] and key["secret"].startswith("rg_")
    assert key["limits"] == {"rate_per_minute": 10, "max_active": None, "seconds_per_day": None}
    user = {"Authorization": f"Bearer {key['secret']}"}
    assert httpx.get(f"{server.base_url}/v1/models", headers=user).status_code == 200

    listed = httpx.get(base, headers=admin).json()
    assert key["id"] in [k["id"] for k in listed["data"]]
    assert all("secret" not in k and "key_hash" not in k for k in listed["data"])

    changed = httpx.patch(
        f"{base}/{key['id']}",
        json={"limits": {"max_active": 2, "rate_per_minute": None}},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"] == {
        "rate_per_minute": None,
        "max_active": 2,
        "seconds_per_day": None,
    }
    stored = server.call(server.components.keys.get(key["id"]))
    assert stored.limits == Limits(max_active=2)

    revoked = httpx.delete(f"{base}/{key['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    gone = httpx.get(f"{server.base_url}/v1/models", headers=user)
    assert gone.status_code == 401  # this process forgets a key it revoked at once


def test_user_keys_get_403_in_the_envelope(server: LiveServer) -> None:
    for method, path in [
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("GET", "/v1/admin/usage"),
        ("DELETE", "/v1/admin/keys/key_x"),
    ]:
        answer = httpx.request(method, server.base_url + path, headers=server.headers())
        assert answer.status_code == 403, (path, answer.text)
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("permission_error", "admin_required")
    assert httpx.get(f"{server.base_url}/v1/admin/keys").status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "no owner"}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "a", "role": "root"}, "role"),
        ({"owner": "a", "limits": {"rate_per_minute": -1}}, "rate_per_minute"),
        ({"owner": "a", "limits": {"rate_per_minute": "5"}}, "rate_per_minute"),
        ({"owner": "a", "limits": {"per_minute": 5}}, "limits"),
        ({"owner": "a", "limit": {}}, "limit"),
    ],
)
def test_bad_key_bodies_are_400(server: LiveServer, body: dict[str, object], param: str) -> None:
    answer = httpx.post(f"{server.base_url}/v1/admin/keys", json=body, headers=_admin(server))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_unknown_key_ids_are_404(server: LiveServer) -> None:
    admin = _admin(server)
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, f"{server.base_url}/v1/admin/keys/key_nope", headers=admin)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("key_id", ["key_\x00", "key_\ud800"])
async def test_unstorable_key_ids_are_not_found_on_every_store(
    store: TaskStore, key_id: str
) -> None:
    """As GET and PATCH answer them: 404, never PostgreSQL's 400 for a NUL byte."""
    keys = KeyService(store, lambda: 1000.0)
    for call in (keys.get, keys.revoke):
        with pytest.raises(NotFound):
            await call(key_id)


async def test_the_first_key_is_an_admin_key(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.migrate()
    keys = KeyService(store, lambda: 1000.0)
    secret = await ensure_first_key(keys, tmp_path / "first-api-key")
    assert secret is not None
    assert (await keys.identify(f"Bearer {secret}")).role is Role.ADMIN
    await store.close()


async def test_upgrade_makes_the_servers_own_first_key_an_admin(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # a database of before migration 0008
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at)")
        for version, script in sql.migrations("sqlite"):
            if version < 8:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        for id_, owner, name in [("k1", "default", "first key"), ("k2", "bob", "bob")]:
            conn.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, 'rg_x', 1.0, NULL)",
                (id_, owner, name, id_),
            )
    store = SqliteStore(path)
    await store.migrate()
    keys = {key.id: key for key in await store.list_keys()}
    assert keys["k1"].role is Role.ADMIN and keys["k2"].role is Role.USER
    assert keys["k2"].limits == Limits()
    await store.close()


def test_cli_creates_admin_and_limited_keys_and_updates_them(tmp_path: Path) -> None:
    runner, data = CliRunner(), ["--data-dir", str(tmp_path)]
    made = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--owner",
            "acme",
            "--admin",
            "--max-active",
            "3",
            "--rate-per-minute",
            "20",
            *data,
        ],
    )
    assert made.exit_code == 0, made.output
    line = runner.invoke(app, ["keys", "list", *data]).stdout.strip().splitlines()[-1]
    key_id, *_, role, limits = line.split("\t")
    assert (role, limits) == ("admin", "rate_per_minute=20,max_active=3")
    updated = runner.invoke(
        app,
        [
            "keys",
            "update",
            key_id,
            "--role",
            "user",
            "--clear",
            "max-active",
            "--seconds-per-day",
            "600",
            *data,
        ],
    )
    assert updated.exit_code == 0, updated.output
    assert "user, rate_per_minute=20,seconds_per_day=600" in updated.stdout
    empty = runner.invoke(app, ["keys", "create", "--owner", " ", *data])
    assert empty.exit_code == 2 and "owner" in empty.output
