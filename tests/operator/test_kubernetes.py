"""deploy/kubernetes: every manifest valid against the Kubernetes schemas, offline, and
what a working deployment needs (probes, GPU requests, grace, secrets, configuration).

``kubernetes-validate`` bundles the schemas of each Kubernetes release; the test checks
that validating reaches no network (a connect fails the test).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reelgate.config import load_config
from reelgate.domain.catalog import SEEDANCE
from reelgate.domain.retention import parse_duration
from reelgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VERSION = "1.30"  # the oldest release the manifests are for (autoscaling/v2, policy/v1)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


DOCUMENTS = _documents()


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.mark.parametrize(
    "document", [d for _, d in DOCUMENTS], ids=[f"{f}:{d['kind']}" for f, d in DOCUMENTS]
)
def test_valid_against_the_kubernetes_schemas(document: dict[str, Any], no_network: None) -> None:
    kubernetes_validate.validate(document, VERSION, strict=True)  # strict: no unknown fields


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def _pod(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _named("Deployment", name)["spec"]["template"]["spec"]
    return spec


def _container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(name)["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def test_the_api_probes_health_and_readiness_and_scales() -> None:
    api = _container("reelgate-api")
    assert api["command"][:4] == ["reelgate", "serve", "--workers", "0"]
    port = api["ports"][0]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["resources"]["requests"]["cpu"]  # the HPA's utilisation is of the request
    hpa = _named("HorizontalPodAutoscaler", "reelgate-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "reelgate-api",
    }
    service = _named("Service", "reelgate-api")
    labels = _named("Deployment", "reelgate-api")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("name", ["reelgate-worker-cpu", "reelgate-worker-gpu"])
def test_workers_stop_after_their_render_grace(name: str) -> None:
    worker = _container(name)
    assert worker["command"][:2] == ["reelgate", "worker"]
    grace = float(_env(worker)["REELGATE_GRACE_SECONDS"])
    assert _pod(name)["terminationGracePeriodSeconds"] > grace + 10


def test_the_gpu_worker_asks_for_a_gpu_node(tmp_path: Path) -> None:
    pod, worker = _pod("reelgate-worker-gpu"), _container("reelgate-worker-gpu")
    resources = worker["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(
        t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"]
    )
    command = worker["command"]
    models = command[command.index("--models") + 1].split(",")
    config = _configmap_file("reelgate.toml")
    assert set(models) <= set(_load(config, tmp_path, "gpu").local_models)


def test_the_migration_job_migrates() -> None:
    job = _named("Job", "reelgate-migrate")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["reelgate", "migrate"]
    assert {"secretRef": {"name": "reelgate-secrets"}} in container["envFrom"]


def test_prometheus_scrapes_each_process_on_its_port() -> None:
    for name in ("reelgate-api", "reelgate-worker-cpu", "reelgate-worker-gpu"):
        template = _named("Deployment", name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        ports = {port["containerPort"] for port in template["spec"]["containers"][0]["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports
        env = _env(template["spec"]["containers"][0])
        if name != "reelgate-api":
            assert env["REELGATE_METRICS_PORT"] == annotations["prometheus.io/port"]


def _secret_keys() -> dict[str, set[str]]:
    return {
        d["metadata"]["name"]: set(d["stringData"]) for _, d in DOCUMENTS if d["kind"] == "Secret"
    }


def test_settings_are_known_and_references_resolve() -> None:
    fields = {f"REELGATE_{name.upper()}" for name in Settings.model_fields}
    configmaps = {
        d["metadata"]["name"]: d["data"] for _, d in DOCUMENTS if d["kind"] == "ConfigMap"
    }
    secrets = _secret_keys()
    shared = configmaps["reelgate-env"]
    for name in shared:
        assert name in fields, name
    for name in secrets["reelgate-secrets"]:
        assert name in fields, name
    for key in ("REELGATE_RETAIN_OUTPUTS", "REELGATE_RETAIN_INPUTS"):
        parse_duration(shared[key])
    for _, document in DOCUMENTS:
        if document["kind"] not in ("Deployment", "Job"):
            continue
        pod = document["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                ref = source.get("secretRef") or source["configMapRef"]
                assert ref["name"] in secrets or ref["name"] in configmaps
            for name in _env(container):
                assert name in fields or name == "HF_HUB_OFFLINE", name
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                data = configmaps[volume["configMap"]["name"]]
                assert {item["key"] for item in volume["configMap"]["items"]} <= set(data)


def _configmap_file(key: str) -> str:
    data: dict[str, str] = _named("ConfigMap", "reelgate-config")["data"]
    return data[key]


def _load(text: str, folder: Path, name: str) -> Any:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return load_config(str(path), models=[spec.id for spec in SEEDANCE])


def test_the_configuration_files_load_and_name_their_keys(tmp_path: Path) -> None:
    whole = _load(_configmap_file("reelgate.toml"), tmp_path, "whole")
    workers = _load(_configmap_file("workers.toml"), tmp_path, "workers")
    assert whole.local_models and not workers.local_models
    assert whole.providers == workers.providers and whole.routes == workers.routes
    provider_keys = _secret_keys()["reelgate-provider-keys"]
    for provider in whole.providers.values():
        if provider.api_key_env:
            assert provider.api_key_env in provider_keys
    for name in ("reelgate-worker-cpu", "reelgate-worker-gpu"):
        refs = [s.get("secretRef", {}).get("name") for s in _container(name)["envFrom"]]
        assert "reelgate-provider-keys" in refs
