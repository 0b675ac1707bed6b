"""``GET /metrics`` of a real ``reelgate serve``: what a scrape counts after real traffic.

One server (a subprocess, so the metrics run in their multiprocess mode as in
production) serves requests of several kinds, renders tasks locally and at a fake Ark
upstream, cancels one and delivers a webhook; its scrape is then parsed with
prometheus_client's own parser. Two API processes on one port must give one sum. The
example Grafana dashboard may use only metric names that a scrape really has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reelgate.backends.remote.fakes.ark import FakeArkFaults, FakeArkSettings, fake_ark_app
from tests.procs import Api, ready, spawn_api, wait_until
from tests.providers.harness import KEY_ENV, write_config
from tests.upstreams import start_fake
from tests.webhooks.receiver import Receiver, start_receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "reelgate.json"
LOCAL = "doubao-seedance-2-0-fast"  # the instant renderer
SLOW = "doubao-seedance-1-5-pro"  # the instant renderer after a minute: cancelled first
REMOTE = "doubao-seedance-1-0-pro"  # routed to the fake Ark
ARK_KEY = "fake-ark-key"
TOKEN = "a-metrics-token"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    """One parsed scrape: every sample by (name, labels), and the family names."""

    text: str
    samples: Samples

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over the samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, have), v in self.samples.items() if n == name and wanted <= have)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(base_url: str, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, samples)


@dataclass
class Served:
    scrape: Scrape
    api: Api
    tasks: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("metrics")
    faults = FakeArkFaults(get_500=1)  # one upstream error to count
    settings = FakeArkSettings(api_keys=(ARK_KEY,), min_seconds=0.2, max_seconds=0.5, faults=faults)
    receiver, hooks = start_receiver()
    with start_fake(fake_ark_app(settings)) as ark:
        providers = {"ark": {"kind": "ark", "base_url": ark.url("/api/v3")}}
        config = write_config(root / "reelgate.toml", providers, {REMOTE: ["ark"]})
        env = {
            "REELGATE_RENDERER": "instant",
            "REELGATE_PREVIEW_DELAY": f"{SLOW}=60",
            "REELGATE_CONFIG": str(config),
            "REELGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "REELGATE_LOG_FORMAT": "json",
            "REELGATE_LOG_LEVEL": "info",
            KEY_ENV: ARK_KEY,
        }
        api = ready(spawn_api(root / "data", env, workers=2))
        try:
            result, tasks = _traffic(api, hooks.url("/hook"), receiver)
            yield Served(result, api, tasks)
        finally:
            api.stop()
            hooks.stop()


def _traffic(
    api: Api, hook: str, receiver: Receiver
) -> tuple[Scrape, dict[str, dict[str, object]]]:
    key = {"Authorization": f"Bearer {api.first_key()}"}
    with httpx.Client(base_url=api.base_url, headers=key, timeout=30) as client:

        def create(prompt: str, model: str, **fields: object) -> str:
            body = {"prompt": prompt, "model": model, "seconds": 4, **fields}
            response = client.post("/v1/videos", json=body)
            assert response.status_code == 200, response.text
            return str(response.json()["id"])

        ids = {
            "local": create("a paper boat", LOCAL, callback_url=hook),
            "failed": create("[[sandbox:fail]] no", LOCAL),
            "remote": create("a red fox", REMOTE),
            "slow": create("a slow one", SLOW),
        }
        assert client.post(f"/v1/videos/{ids['slow']}/cancel").status_code == 200
        assert client.get("/v1/videos/task_unknown").status_code == 400
        assert client.get("/no/such/path/task_abc").status_code == 404
        assert httpx.get(f"{api.base_url}/v1/models", timeout=10).status_code == 401

        def finished() -> dict[str, dict[str, object]] | None:
            seen = {name: client.get(f"/v1/videos/{id_}").json() for name, id_ in ids.items()}
            done = all(v["status"] in ("SUCCESS", "FAILED", "ERROR") for v in seen.values())
            return seen if done else None

        tasks = wait_until(finished, timeout=60, what="every task to finish", interval=0.2)
    receiver.wait_for(lambda got: len(got) >= 1)

    def delivered() -> Scrape | None:  # the attempt is recorded just after the answer
        result = scrape(api.base_url)
        return result if result.total("reelgate_webhook_deliveries_total") >= 1 else None

    return wait_until(delivered, timeout=30, what="the delivery counted"), tasks


def test_http_requests_by_route_template_and_status(served: Served) -> None:
    s = served.scrape
    count = "reelgate_http_requests_total"
    assert s.value(count, method="POST", route="/v1/videos", status="200") == 4
    retrieve = "/v1/videos/{task_id}"  # the fast path, by its template
    assert s.value(count, method="GET", route=retrieve, status="400") == 1
    assert s.total(count, method="GET", route=retrieve, status="200") >= 4
    assert s.value(count, method="POST", route="/v1/videos/{task_id}/cancel", status="200") == 1
    assert s.value(count, method="GET", route="<unmatched>", status="404") == 1
    assert s.value(count, method="GET", route="/v1/models", status="401") == 1
    histogram = "reelgate_http_request_duration_seconds_count"
    assert s.value(histogram, method="POST", route="/v1/videos") == 4
    # No raw path (with an id) ever becomes a label value.
    routes = {dict(labels).get("route", "") for _, labels in s.samples}
    assert not [route for route in routes if re.search(r"task_(?!id\})", route)], routes


def test_tasks_created_and_finished_by_model_backend_status(served: Served) -> None:
    s = served.scrape
    statuses = {name: task["status"] for name, task in served.tasks.items()}
    assert statuses == {"local": "SUCCESS", "failed": "FAILED", "remote": "SUCCESS",
                        "slow": "FAILED"}  # fmt: skip
    created = "reelgate_tasks_created_total"
    assert s.value(created, model=LOCAL, backend="instant") == 2
    assert s.value(created, model=REMOTE, backend="ark") == 1
    assert s.value(created, model=SLOW, backend="instant") == 1
    ended = "reelgate_tasks_finished_total"
    assert s.value(ended, model=LOCAL, backend="instant", status="SUCCESS") == 1
    assert s.value(ended, model=LOCAL, backend="instant", status="FAILED") == 1
    assert s.value(ended, model=REMOTE, backend="ark", status="SUCCESS") == 1
    assert s.value(ended, model=SLOW, backend="instant", status="CANCELLED") == 1
    assert s.total("reelgate_queue_wait_seconds_count") >= 3
    assert s.value("reelgate_render_duration_seconds_count", model=LOCAL, backend="instant") == 1


def test_upstream_webhook_queue_and_storage(served: Served) -> None:
    s = served.scrape
    assert s.total("reelgate_upstream_requests_total", provider="ark", status="2xx") >= 2
    assert s.total("reelgate_upstream_request_duration_seconds_count", provider="ark") >= 2
    assert s.value("reelgate_upstream_errors_total", provider="ark", kind="server_error") == 1
    assert s.value("reelgate_upstream_requests_total", provider="ark", status="5xx") == 1
    duration = "reelgate_upstream_task_duration_seconds_count"
    assert s.value(duration, provider="ark", model=REMOTE) == 1
    assert s.value("reelgate_webhook_deliveries_total", outcome="delivered") >= 1
    for phase in ("queued", "submitting", "rendering", "watching", "rehosting"):
        assert s.total("reelgate_queue_depth", phase=phase) == 0  # read from the database
    assert s.value("reelgate_stored_bytes", kind="videos") > 0
    assert s.value("reelgate_processes", role="api") == 1


def test_json_logs_carry_task_ids(served: Served) -> None:
    records = [
        json.loads(line) for line in served.api.output().splitlines() if line.startswith("{")
    ]
    assert records, served.api.output()[-2000:]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    remote_id = served.tasks["remote"]["id"]
    assert any(r.get("task_id") == remote_id for r in records), records[-20:]


def test_the_grafana_dashboard_uses_only_scraped_metrics(served: Served) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in re.findall(r"\breelgate_[a-z_]+", expr)}
    missing = used - served.scrape.names()
    assert not missing, f"the dashboard uses metrics that no scrape has: {sorted(missing)}"


def test_two_api_processes_give_one_sum_and_the_token_is_asked(tmp_path: Path) -> None:
    env = {"REELGATE_METRICS_TOKEN": TOKEN, "REELGATE_API_PROCESSES": "2"}
    api = ready(spawn_api(tmp_path / "data", env))
    try:
        assert httpx.get(f"{api.base_url}/metrics", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{api.base_url}/metrics", headers=wrong, timeout=10).status_code == 401
        folder = tmp_path / "data" / "metrics"

        def both_counted() -> bool:  # each request on a new connection: the kernel spreads them
            assert httpx.get(f"{api.base_url}/readyz", timeout=10).status_code == 200
            return len(list(folder.glob("counter_*.db"))) >= 2

        wait_until(both_counted, timeout=60, what="both processes to count a request")
        for _ in range(30):
            assert httpx.get(f"{api.base_url}/healthz", timeout=10).status_code == 200

        def summed() -> Scrape | None:  # each process adds its counts within a second
            after = scrape(api.base_url, TOKEN)
            healthz = after.value(
                "reelgate_http_requests_total", method="GET", route="/healthz", status="200"
            )
            assert healthz <= 30
            return after if healthz == 30 else None

        after = wait_until(summed, timeout=30, what="both processes' counts", interval=0.2)
        assert after.total("reelgate_http_request_duration_seconds_count", route="/healthz") == 30
        assert after.value("reelgate_processes", role="api") == 2
    finally:
        assert api.stop() == 0
