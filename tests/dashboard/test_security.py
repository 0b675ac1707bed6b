"""The dashboard's security over real HTTP, without a browser: sessions, CSRF, owners."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from reelgate.dashboard.session import COOKIE
from reelgate.domain.quotas import Limits, Role
from tests.procs import wait_until
from tests.server import LiveServer, start_server

TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
MODEL = "doubao-seedance-1-0-pro"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(Path(tmp_path_factory.mktemp("dash-security")), renderer="instant")
    yield live
    live.stop()


def sign_in(server: LiveServer, key: str) -> httpx.Client:
    """A client holding a dashboard session of ``key``."""
    client = httpx.Client(base_url=server.base_url)
    form = client.get("/dashboard/signin")
    token = TOKEN.search(form.text)
    assert token is not None
    answer = client.post("/dashboard/signin", data={"csrf": token.group(1), "key": key})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/tasks"
    return client


def csrf(client: httpx.Client) -> str:
    token = TOKEN.search(client.get("/dashboard/tasks").text)
    assert token is not None
    return token.group(1)


def create(server: LiveServer, owner: str, **fields: str) -> str:
    body = {"model": MODEL, "prompt": "a test", "seconds": "2", **fields}
    answer = httpx.post(server.base_url + "/v1/videos", json=body, headers=server.headers(owner))
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["id"]
    return task_id


def test_the_cookie_is_http_only_strict_and_holds_no_key(server: LiveServer) -> None:
    key = server.key_for("fay")
    client = sign_in(server, key)
    cookie = next(c for c in client.cookies.jar if c.name == COOKIE)
    assert cookie.path == "/dashboard"
    assert not cookie.secure  # served over http here
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert key not in (cookie.value or "") and "rg_" not in (cookie.value or "")
    header = client.get("/dashboard/signin").headers  # signed in: a redirect, no new cookie
    assert "set-cookie" not in header
    fresh = httpx.post(
        server.base_url + "/dashboard/signin", data={"csrf": "x", "key": key}
    ).headers.get("set-cookie", "")
    assert "HttpOnly" in fresh and "SameSite=strict" in fresh and "Path=/dashboard" in fresh


def test_pages_carry_a_content_security_policy(server: LiveServer) -> None:
    client = sign_in(server, server.key_for("fay"))
    page = client.get("/dashboard/tasks")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text.replace('<script src="/dashboard/static/', "")


def test_cookies_are_secure_behind_https(tmp_path: Path) -> None:
    live = start_server(tmp_path, renderer="instant", workers=0, public_url="https://gw.example")
    try:
        answer = httpx.get(live.base_url + "/dashboard/signin")
        assert "; Secure" in answer.headers["set-cookie"]
    finally:
        live.stop()


def test_a_form_without_the_token_is_refused_and_changes_nothing(server: LiveServer) -> None:
    client = sign_in(server, server.key_for("gus"))
    fields = {"model": MODEL, "prompt": "no token", "seconds": "2"}
    assert client.post("/dashboard/tasks", data=fields).status_code == 403
    assert client.post("/dashboard/tasks", data={**fields, "csrf": "forged"}).status_code == 403
    listed = httpx.get(server.base_url + "/v1/videos", headers=server.headers("gus")).json()
    assert listed["data"] == []

    other = sign_in(server, server.key_for("gus"))  # another session: another token
    assert client.post("/dashboard/tasks", data={**fields, "csrf": csrf(other)}).status_code == 403

    task_id = create(server, "gus")
    assert client.post(f"/dashboard/tasks/{task_id}/delete").status_code == 403
    assert client.post(f"/dashboard/tasks/{task_id}/delete", data={"csrf": ""}).status_code == 403
    still = httpx.get(server.base_url + f"/v1/videos/{task_id}", headers=server.headers("gus"))
    assert still.status_code == 200

    # The token, but from another site's page: the Origin check refuses it too.
    evil = {"origin": "https://evil.example"}
    token = csrf(client)
    answer = client.post(f"/dashboard/tasks/{task_id}/delete", data={"csrf": token}, headers=evil)
    assert answer.status_code == 403
    answer = client.post(f"/dashboard/tasks/{task_id}/delete", data={"csrf": token})
    assert answer.status_code == 303


def test_signing_in_needs_the_form_token(server: LiveServer) -> None:
    client = httpx.Client(base_url=server.base_url)
    answer = client.post("/dashboard/signin", data={"key": server.key_for("gus")})
    assert answer.status_code == 403
    assert COOKIE not in answer.headers.get("set-cookie", "")


def test_a_revoked_keys_session_ends_at_once(server: LiveServer) -> None:
    key, secret = server.call(server.components.keys.create("hal"))
    client = sign_in(server, secret)
    task_id = create(server, "hal")
    assert client.get("/dashboard/tasks").status_code == 200
    server.call(server.components.keys.revoke(key.id))
    answer = client.get("/dashboard/tasks")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/signin"
    assert client.get(f"/dashboard/tasks/{task_id}/content").status_code == 401
    assert client.get(f"/dashboard/tasks/{task_id}/events").status_code == 401
    assert client.post("/dashboard/signin", data={"key": secret}).status_code == 403


def test_forged_or_expired_sessions_are_refused(server: LiveServer) -> None:
    client = sign_in(server, server.key_for("ivy"))
    value = client.cookies[COOKIE]
    key_hash, issued, nonce, mac = value.split(".")
    for forged in (
        f"{key_hash}.{int(issued) + 1}.{nonce}.{mac}",  # a longer life
        f"{'0' * 64}.{issued}.{nonce}.{mac}",  # another key
        "garbage",
    ):
        answer = httpx.get(server.base_url + "/dashboard/tasks", cookies={COOKIE: forged})
        assert answer.status_code == 303
    old = int(issued) - 13 * 3600  # signed right, but older than a session lives
    signer = server.components.signer
    stale = (
        f"{key_hash}.{old}.{nonce}.{signer.signature(f'dashboard-session:{key_hash}:{nonce}', old)}"
    )
    answer = httpx.get(server.base_url + "/dashboard/tasks", cookies={COOKIE: stale})
    assert answer.status_code == 303


def test_another_owners_task_is_not_found(server: LiveServer) -> None:
    theirs = create(server, "jay")
    client = sign_in(server, server.key_for("kim"))
    assert client.get(f"/dashboard/tasks/{theirs}").status_code == 404
    assert client.get(f"/dashboard/tasks/{theirs}/content").status_code == 404
    assert client.get(f"/dashboard/tasks/{theirs}/events").status_code == 404
    token = csrf(client)
    assert client.post(f"/dashboard/tasks/{theirs}/cancel", data={"csrf": token}).status_code == 404
    assert client.post(f"/dashboard/tasks/{theirs}/delete", data={"csrf": token}).status_code == 404
    events = client.get(f"/dashboard/events?task={theirs}")  # the list's stream: nothing of it
    assert events.status_code == 200 and theirs not in events.text
    still = httpx.get(server.base_url + f"/v1/videos/{theirs}", headers=server.headers("jay"))
    assert still.status_code == 200


def test_admin_pages_are_for_admin_keys(server: LiveServer) -> None:
    user = sign_in(server, server.key_for("lou"))
    for path in ("/dashboard/admin/keys", "/dashboard/admin/usage", "/dashboard/admin/health"):
        answer = user.get(path)
        assert answer.status_code == 403 and "admin" in answer.text
    made = user.post("/dashboard/admin/keys", data={"csrf": csrf(user), "owner": "lou2"})
    assert made.status_code == 403
    _, secret = server.call(server.components.keys.create("root", role=Role.ADMIN))
    admin = sign_in(server, secret)
    assert admin.get("/dashboard/admin/health").status_code == 200
    bad = admin.post(
        "/dashboard/admin/keys", data={"csrf": csrf(admin), "owner": "x", "max_active": "-1"}
    )
    assert bad.status_code == 400 and "max_active" in bad.text


def test_filters_and_pages(server: LiveServer) -> None:
    ids = [create(server, "max") for _ in range(22)]
    ids.append(create(server, "max", model="doubao-seedance-2-0", seconds="4"))
    client = sign_in(server, server.key_for("max"))
    first = client.get("/dashboard/tasks")
    rows = re.findall(r'<tr data-task="([^"]+)"', first.text)
    assert rows == ids[::-1][:20]
    after = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert after is not None
    second = client.get(after.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-task="([^"]+)"', second.text) == ids[::-1][20:]
    assert 'id="next-page"' not in second.text
    only = client.get("/dashboard/tasks", params={"model": "doubao-seedance-2-0"})
    assert re.findall(r'<tr data-task="([^"]+)"', only.text) == [ids[-1]]
    bad = client.get("/dashboard/tasks", params={"status": "NOPE"})
    assert bad.status_code == 200 and "status must be one of" in bad.text


def test_the_form_takes_an_image_and_the_keys_limits(server: LiveServer) -> None:
    image = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 80, 40)).save(image, format="PNG")
    client = sign_in(server, server.key_for("ned"))
    fields = {"csrf": csrf(client), "model": "doubao-seedance-2-0", "prompt": "from a picture"}
    fields.update(seconds="4", size="16:9", resolution="480p")
    files = {"input_reference": ("red.png", image.getvalue(), "image/png")}
    made = client.post("/dashboard/tasks", data=fields, files=files)
    assert made.status_code == 303, made.text
    task_id = made.headers["location"].rsplit("/", 1)[-1]
    assert "from an image" in client.get(f"/dashboard/tasks/{task_id}").text
    text_only = {**fields, "model": MODEL, "seconds": "2"}  # this model takes no image
    refused = client.post("/dashboard/tasks", data=text_only, files=files)
    assert refused.status_code == 400 and "does not support model" in refused.text

    _, secret = server.call(server.components.keys.create("oz", limits=Limits(max_active=0)))
    limited = sign_in(server, secret)
    fields = {"csrf": csrf(limited), "model": MODEL, "prompt": "one too many", "seconds": "2"}
    answer = limited.post("/dashboard/tasks", data=fields)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert "one too many" in answer.text  # the form keeps what was typed
    listed = httpx.get(
        server.base_url + "/v1/videos", headers={"Authorization": f"Bearer {secret}"}
    )
    assert listed.json()["data"] == []


def succeeded(server: LiveServer, owner: str, **fields: str) -> str:
    """A task of ``owner`` created over the API, once it is SUCCESS (so it is charged)."""
    task_id = create(server, owner, **fields)
    url = f"{server.base_url}/v1/videos/{task_id}"

    def done() -> bool:
        return bool(httpx.get(url, headers=server.headers(owner)).json()["status"] == "SUCCESS")

    wait_until(done, timeout=60, what=f"{owner}'s task to succeed")
    return task_id


def test_every_key_reads_its_own_owners_usage(server: LiveServer) -> None:
    succeeded(server, "pia")
    succeeded(server, "quinn", model="doubao-seedance-2-0", seconds="4")
    client = sign_in(server, server.key_for("pia"))
    tasks = client.get("/dashboard/tasks").text
    assert 'href="/dashboard/usage"' in tasks and "/dashboard/admin/usage" not in tasks
    own = client.get("/dashboard/usage")
    assert own.status_code == 200, own.text
    assert re.findall(r'<tr data-model="([^"]+)"', own.text) == [MODEL]
    assert "quinn" not in own.text and "doubao-seedance-2-0" not in own.text
    api = httpx.get(server.base_url + "/v1/usage", headers=server.headers("pia")).json()
    assert api["totals"]["tasks"] == 1
    assert f'<th id="total-tasks">{api["totals"]["tasks"]}</th>' in own.text
    # Another owner in the query changes nothing: the page is the session owner's.
    named = client.get("/dashboard/usage", params={"owner": "quinn"})
    assert re.findall(r'<tr data-model="([^"]+)"', named.text) == [MODEL]
    assert "quinn" not in named.text
    bad = client.get("/dashboard/usage", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from must be a date" in bad.text

    _, secret = server.call(server.components.keys.create("audit", role=Role.ADMIN))
    admin = sign_in(server, secret)
    everyone = admin.get("/dashboard/admin/usage").text
    assert "<td>pia</td>" in everyone and "<td>quinn</td>" in everyone
    only = admin.get("/dashboard/admin/usage", params={"owner": "quinn"}).text
    assert re.findall(r'<tr data-model="([^"]+)"', only) == ["doubao-seedance-2-0"]
    mine = admin.get("/dashboard/usage").text  # an admin's own page: its owner only
    assert "pia" not in mine and 'id="every-owner"' in mine


def test_admins_change_a_keys_role_and_limits_and_the_api_enforces_them(
    server: LiveServer,
) -> None:
    keys = server.components.keys
    key, secret = server.call(keys.create("rae"))
    bearer = {"Authorization": f"Bearer {secret}"}
    url = f"/dashboard/admin/keys/{key.id}/update"
    limit = {"role": "user", "rate_per_minute": "", "max_active": "0", "seconds_per_day": ""}

    user = sign_in(server, server.key_for("sam"))
    assert user.post(url, data={**limit, "csrf": csrf(user)}).status_code == 403
    admin_key, admin_secret = server.call(keys.create("boss", role=Role.ADMIN))
    admin = sign_in(server, admin_secret)
    assert admin.post(url, data=limit).status_code == 403  # no CSRF token
    bad = admin.post(url, data={**limit, "max_active": "-1", "csrf": csrf(admin)})
    assert bad.status_code == 400 and "max_active" in bad.text
    assert server.call(keys.get(key.id)).limits == Limits()  # nothing changed

    done = admin.post(url, data={**limit, "csrf": csrf(admin)})
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/admin/keys?updated={key.id}"
    assert server.call(keys.get(key.id)).limits == Limits(max_active=0)
    body = {"model": MODEL, "prompt": "over the limit", "seconds": "2"}
    refused = httpx.post(server.base_url + "/v1/videos", json=body, headers=bearer)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert refused.json()["error"]["code"] == "active_tasks_limit"
    listed = httpx.get(server.base_url + "/v1/videos", headers=bearer).json()
    assert listed["data"] == []
    page = admin.get("/dashboard/admin/keys?updated=" + key.id).text
    assert 'id="updated"' in page and "0 active" in page
    assert 'name="max_active" value="0"' in page

    # Empty fields clear the limits; the role changes with them.
    cleared = {**limit, "max_active": "", "role": "admin", "csrf": csrf(admin)}
    assert admin.post(url, data=cleared).status_code == 303
    assert server.call(keys.get(key.id)).limits == Limits()
    assert httpx.post(server.base_url + "/v1/videos", json=body, headers=bearer).status_code == 200
    assert httpx.get(server.base_url + "/v1/admin/keys", headers=bearer).status_code == 200

    # No such key: 404; the key signed in may not drop its own admin role.
    gone = admin.post(
        "/dashboard/admin/keys/key_nope/update", data={**cleared, "csrf": csrf(admin)}
    )
    assert gone.status_code == 404
    own = {**limit, "max_active": "", "csrf": csrf(admin)}
    refused_self = admin.post(f"/dashboard/admin/keys/{admin_key.id}/update", data=own)
    assert refused_self.status_code == 400 and "signed in with" in refused_self.text
    assert server.call(keys.get(admin_key.id)).admin
