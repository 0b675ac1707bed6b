"""Settings: read once at start-up from ``REELGATE_*`` variables and flags, validated."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelgate.domain.retention import Retention, parse_duration

DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://", "memory:")
STORAGE_SCHEMES = ("file://", "s3://", "memory:")


def _default_concurrency() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class Settings(BaseSettings):
    """Everything configurable about a reelgate process."""

    model_config = SettingsConfigDict(env_prefix="REELGATE_", extra="forbid")

    env: Literal["development", "production"] = "development"
    config: str = ""  # the TOML configuration file (providers, routes); empty: preview only
    data_dir: Path = Path("data")
    database_url: str = ""  # default: sqlite:///<data_dir>/reelgate.db
    storage_url: str = ""  # default: file://<data_dir>/blobs
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str = ""  # default: http://<host>:<port>
    workers: int = Field(default_factory=_default_concurrency, ge=0, le=256)
    # Idle keep-alive connections are closed after this many seconds; keep it above a
    # load balancer's idle timeout, or the balancer may send on a closing connection.
    keep_alive: int = Field(default=75, ge=1, le=3600)
    # A connection whose request headers are not complete this many seconds after it
    # opened (or after its request began) is closed, as is one whose body stops arriving
    # for body_timeout seconds: slow or half-sent requests cannot hold the server.
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    url_ttl: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    signing_secret: str = ""  # default: generated once into <data_dir>/signing.key
    lease_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    db_pool_size: int = Field(default=10, ge=1, le=200)  # PostgreSQL connections per process
    grace_seconds: float = Field(default=30.0, ge=0)  # on shutdown, before handing back
    poll_interval: float = Field(default=2.0, gt=0)  # fallback when no wake-up arrives
    # How often a worker process reads the cancel log: the longest a render or upstream
    # task cancelled in another process runs on (the worker inside the API stops at once).
    cancel_check: float = Field(default=1.0, gt=0, le=60)
    # Server-sent events: a comment line after this many idle seconds keeps proxies from
    # closing a stream; without LISTEN/NOTIFY (SQLite), the events table is read this often.
    sse_heartbeat: float = Field(default=15.0, gt=0, le=3600)
    events_poll_interval: float = Field(default=0.1, gt=0, le=60)
    s3_endpoint_url: str = ""  # an S3-compatible server; empty: AWS
    s3_public_endpoint_url: str = ""  # the host download links are signed for
    s3_region: str = ""
    s3_access_key_id: str = ""  # empty: boto3's default credential chain
    s3_secret_access_key: str = ""
    s3_addressing_style: Literal["", "path", "virtual"] = ""
    renderer: Literal["preview", "instant"] = "preview"  # instant: a tiny clip at once
    preview_delay: str = ""  # "model=seconds,…", "*" for every model
    # The device of every local (diffusers) model in this process, e.g. cuda:1 (worker
    # --device); empty: each model's own ``device`` in the configuration file.
    device: str = Field(default="", pattern=r"^(|cpu|cuda(:\d+)?)$")
    # The OpenAI dialect (/openai/v1, docs/api.md): the model ids its clients may send
    # for ours ("alias=model,…"; empty: none), and the polling interval (seconds) its
    # answers advise (openai-poll-after-ms) while a task is queued or renders here.
    openai_models: str = "sora-2=doubao-seedance-2-0-fast,sora-2-pro=doubao-seedance-2-0"
    poll_after: float = Field(default=1.0, ge=0.1, le=60)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    bench_routes: bool = False  # the benchmarks' baseline route, /bench/videos/{id}
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # text: one readable line per record; json: one JSON object per line, with the
    # request id and task id as fields (docs/metrics.md, "JSON logs").
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics (docs/metrics.md): GET /metrics on the API port, and the per-
    # request counting behind it. metrics_token: when set, /metrics wants it as a Bearer
    # token. metrics_dir: where the processes of this host share their values (default
    # <data_dir>/metrics). metrics_port: a worker's own /metrics port (0: none).
    metrics: bool = True
    metrics_token: str = ""
    metrics_dir: Path | None = None
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # API processes of ``reelgate serve`` sharing its port; the first also runs the
    # embedded worker. More processes answer more status reads, up to one per core.
    api_processes: int = Field(default=1, ge=1, le=64)
    # Below this many free bytes in the data or storage folder, workers claim nothing and
    # /readyz answers 503 (tasks wait, they do not fail); 0 checks writability only.
    min_free_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # Webhooks (docs/webhooks.md): networks (CIDR, comma-separated) that deliveries may
    # reach although they are private, loopback or link-local, e.g. "10.0.0.0/8"; the
    # timeout of one attempt; the first retry's wait (it doubles per attempt).
    webhook_allowed_networks: str = ""
    webhook_timeout: float = Field(default=5.0, gt=0, le=60)
    webhook_retry_base: float = Field(default=5.0, gt=0, le=3600)
    webhook_poll_interval: float = Field(default=1.0, gt=0, le=60)
    # The global queue cap (docs/operations.md, "Keys, scopes and limits"): creates are
    # refused (429 queue_full) while this many tasks of all owners are unfinished; 0: no
    # cap. Keys' own limits are set per key (reelgate keys create, /v1/admin/keys).
    max_queued: int = Field(default=0, ge=0, le=1_000_000_000)
    # Retention (docs/operations.md, "Retention"): how long after a task finished its
    # video and thumbnail (outputs) and its input image are kept, e.g. "30d", "12h",
    # "1w"; "" or "off": for ever. A janitor in one worker process at a time deletes
    # what is older, every retention_interval seconds, retention_batch tasks at a time.
    retain_outputs: str = ""
    retain_inputs: str = ""
    retention_interval: float = Field(default=300.0, gt=0, le=86400)
    retention_batch: int = Field(default=200, ge=1, le=10_000)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'reelgate.db'}"
        if not self.storage_url:
            self.storage_url = f"file://{(self.data_dir / 'blobs').resolve()}"
        if self.metrics_dir is None:
            self.metrics_dir = self.data_dir / "metrics"
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
            self.public_url = f"http://{host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.database_url.startswith(DATABASE_SCHEMES):
            raise ValueError(f"REELGATE_DATABASE_URL must start with one of {DATABASE_SCHEMES}")
        if not self.storage_url.startswith(STORAGE_SCHEMES):
            raise ValueError(f"REELGATE_STORAGE_URL must start with one of {STORAGE_SCHEMES}")
        if self.signing_secret and len(self.signing_secret) < 32:
            raise ValueError("REELGATE_SIGNING_SECRET must be at least 32 characters")
        _parse_delays(self.preview_delay)
        _parse_networks(self.webhook_allowed_networks)
        _parse_aliases(self.openai_models)
        for name in ("retain_outputs", "retain_inputs"):
            try:
                parse_duration(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"REELGATE_{name.upper()}: {exc}") from None
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ValueError("set both REELGATE_S3_ACCESS_KEY_ID and REELGATE_S3_SECRET_ACCESS_KEY")
        if self.env == "production" and "change-me" in self.signing_secret.lower():
            raise ValueError(
                "REELGATE_SIGNING_SECRET is the example's placeholder: anyone who read the "
                "example could sign links; set a random one (e.g. openssl rand -hex 32)"
            )
        if self.env == "production" and self.bench_routes:
            raise ValueError("REELGATE_BENCH_ROUTES is for benchmarks, not production")
        if self.env == "production" and self.public_url.startswith("http://127.0.0.1"):
            raise ValueError(
                "set REELGATE_PUBLIC_URL in production: signed links must reach clients"
            )
        return self

    @property
    def delays(self) -> dict[str, float]:
        """``preview_delay`` parsed: model id (or ``*``) to seconds."""
        return _parse_delays(self.preview_delay)

    @property
    def retention(self) -> Retention:
        """``retain_outputs`` and ``retain_inputs`` parsed (seconds; None: kept for ever)."""
        return Retention(parse_duration(self.retain_outputs), parse_duration(self.retain_inputs))

    @property
    def openai_aliases(self) -> dict[str, str]:
        """``openai_models`` parsed: a model id the OpenAI dialect takes -> ours."""
        return _parse_aliases(self.openai_models)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: the upload (as base64, in JSON) plus the form fields."""
        return -(-self.max_upload_bytes * 4 // 3) + 64 * 1024


def _parse_networks(text: str) -> None:
    for part in filter(None, (item.strip() for item in text.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"REELGATE_WEBHOOK_ALLOWED_NETWORKS: {part!r} is not an address or network"
            ) from None


def _parse_delays(text: str) -> dict[str, float]:
    delays: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not model.strip() or not 0 <= value <= 3600:
            raise ValueError(
                f"REELGATE_PREVIEW_DELAY: expected model=seconds (0 to 3600), got {item!r}"
            )
        delays[model.strip()] = value
    return delays


def _parse_aliases(text: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        alias, sep, model = (part.strip() for part in item.partition("="))
        if not sep or not alias or not model or alias in aliases:
            raise ValueError(
                f"REELGATE_OPENAI_MODELS: expected alias=model, each alias once, got {item!r}"
            )
        aliases[alias] = model
    return aliases
