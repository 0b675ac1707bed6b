"""The example deployment files: the compose file's syntax and structure, and the Dockerfile.

Docker is not needed (``docker compose config`` would be): the compose file is
parsed with PyYAML (anchors and ``<<`` merges resolved as compose does) and
checked for what a working deployment needs.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from reelgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

REELGATE_SERVICES = ("api", "worker")
# what every reelgate process of a deployment must share (docs/deployment.md)
SHARED = (
    "REELGATE_DATABASE_URL",
    "REELGATE_STORAGE_URL",
    "REELGATE_S3_ENDPOINT_URL",
    "REELGATE_S3_REGION",
    "REELGATE_S3_ACCESS_KEY_ID",
    "REELGATE_S3_SECRET_ACCESS_KEY",
    "REELGATE_SIGNING_SECRET",
    "REELGATE_PUBLIC_URL",
    "REELGATE_LEASE_SECONDS",
    "REELGATE_MAX_ATTEMPTS",
)
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+x}
INTERPOLATION = re.compile(r"\$(\$|[A-Za-z_]\w*|\{[A-Za-z_]\w*(?:(?::?[-?+])[^}]*)?\})")
REQUIRED_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*):?\?")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def strings(node: Any) -> list[str]:
    """Every string (keys included) in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment"
    return {str(name): str(value) for name, value in env.items()}


def interpolated(value: str) -> str:
    """``value`` as compose would see it with every variable set to ``value``."""
    return re.sub(r"\$\{[^}]*\}", "value", value).replace("$$", "$")


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "use the long form of depends_on, with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def seconds(duration: str) -> float:
    """A compose duration (``40s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_top_level_keys(compose: dict[str, Any]) -> None:
    known = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
    assert all(key in known or key.startswith("x-") for key in compose), sorted(compose)
    assert {"postgres", "minio", "minio-init", "api", "worker"} <= set(compose["services"])


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        allowed = {"no", "always", "on-failure", "unless-stopped"}
        assert service.get("restart", "no") in allowed, name


def test_reelgate_services_build_this_repository(services: dict[str, dict[str, Any]]) -> None:
    for name in REELGATE_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert services[name]["image"] == services["api"]["image"]


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    api = ["reelgate", "serve", "--workers", "0", "--host", "0.0.0.0"]
    assert services["api"]["command"] == api
    assert services["worker"]["command"][:2] == ["reelgate", "worker"]


def test_reelgate_settings_are_shared_and_known(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.model_fields)
    envs = {name: environment(services[name]) for name in REELGATE_SERVICES}
    for name, env in envs.items():
        for variable in env:
            assert variable.startswith("REELGATE_"), (name, variable)
            assert variable.removeprefix("REELGATE_").lower() in fields, (name, variable)
        missing = [variable for variable in SHARED if not env.get(variable)]
        assert not missing, (name, missing)
    for variable in SHARED:
        assert envs["api"][variable] == envs["worker"][variable], variable

    env = envs["api"]
    database = urlsplit(interpolated(env["REELGATE_DATABASE_URL"]))
    assert database.scheme == "postgresql" and database.hostname == "postgres"
    assert database.port == 5432 and database.path == "/reelgate"
    assert urlsplit(env["REELGATE_STORAGE_URL"]).scheme == "s3"
    endpoint = urlsplit(env["REELGATE_S3_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("minio", 9000)
    assert env["REELGATE_ENV"] == "production"
    assert env["REELGATE_PORT"] == "8000"
    assert "8000:8000" in services["api"]["ports"]


def test_the_bucket_made_is_the_bucket_used(services: dict[str, dict[str, Any]]) -> None:
    bucket = urlsplit(environment(services["api"])["REELGATE_STORAGE_URL"]).netloc
    script = "\n".join(strings(services["minio-init"].get("command", [])))
    assert f"mc mb --ignore-existing local/{bucket}" in script
    key_id = environment(services["api"])["REELGATE_S3_ACCESS_KEY_ID"]
    assert f"mc admin user add local {key_id} " in script
    assert f"arn:aws:s3:::{bucket}/*" in script


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "minio", "api"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                assert seconds(check[key]) > 0, (name, key)
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    probe = " ".join(services["api"]["healthcheck"]["test"])
    assert re.search(r"http://127\.0\.0\.1:8000/(readyz|healthz)\b", probe), probe
    if services["api"]["healthcheck"]["test"][0] == "CMD":
        program = services["api"]["healthcheck"]["test"][1:]
        if program[:2] == ["python", "-c"]:
            compile(program[2], "healthcheck", "exec")  # valid Python


def test_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, (name, target)
            assert condition in CONDITIONS, (name, condition)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (name, target)
    for name in REELGATE_SERVICES:
        deps = depends_on(services[name])
        assert deps.get("postgres") == "service_healthy", name
        assert deps.get("minio-init") == "service_completed_successfully", name
    assert depends_on(services["minio-init"]) == {"minio": "service_healthy"}


def test_workers_can_be_scaled_and_stop_gracefully(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    grace = float(environment(worker)["REELGATE_GRACE_SECONDS"])
    assert seconds(worker["stop_grace_period"]) > grace


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, (name, source)


def test_interpolations_are_valid_and_documented(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for dollar in re.finditer(r"\$", line):
            if dollar.start() > 0 and line[dollar.start() - 1] == "$":
                continue
            assert INTERPOLATION.match(line, dollar.start()), line
    example = (DEPLOY / "env.example").read_text()
    for variable in set(REQUIRED_VARIABLE.findall(text)):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), variable


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined: (INSTRUCTION, arguments)."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "STOPSIGNAL", "CMD"}
    known |= {"ENTRYPOINT", "ARG", "LABEL", "HEALTHCHECK", "ADD"}
    assert all(instruction in known for instruction, _ in instructions), instructions
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [arguments for instruction, arguments in instructions if instruction == "RUN"]
    assert any('pip install ".[server]"' in run for run in runs), runs

    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = shlex.split(arguments)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in [i.rstrip("/") for i in ignored], source

    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image should not run as root"

    exec_form: list[str] = []
    for instruction in ("ENTRYPOINT", "CMD"):
        values = [arguments for name, arguments in instructions if name == instruction]
        if values:
            parsed = json.loads(values[-1])  # the exec form: signals reach reelgate itself
            assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
            exec_form += parsed
    assert exec_form[0] == "reelgate", exec_form
    assert exec_form[1] in ("serve", "worker"), exec_form
