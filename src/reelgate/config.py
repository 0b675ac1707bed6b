"""The configuration file (TOML): providers, routes, local models and the watch loop's limits.

Its path comes from ``REELGATE_CONFIG`` (or ``--config``). Without a file every
model renders on the built-in preview renderer, as before. A bad file fails at
start-up with ``ConfigError``, whose message names the file, the line and the
field. API keys are never in the file: a provider names the environment variable
that holds its key (``api_key_env``), read once at start-up and never logged.

``[local_models."ID"]`` tables serve a public model id with an open model on this
host's GPUs through diffusers (docs/gpu.md): a new id joins the catalog with the
table's limits; a catalog id (a Seedance one) takes the table's limits and renderer.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelgate.domain.catalog import ModelSpec

REMOTE_KINDS = ("ark", "cometapi", "openai")
KINDS = (*REMOTE_KINDS, "preview")
PipelineKind = Literal["wan", "wan-ti2v", "ltx"]
# Per pipeline kind: the multiple of width and height, the frame step (frames are
# step * k + 1) and the frame rate the model was trained at (renderers/shapes.py).
PIPELINES: dict[str, tuple[int, int, int]] = {
    "wan": (16, 4, 16),  # Wan 2.1 T2V: VAE 8x, patch 2; 16 fps
    "wan-ti2v": (32, 4, 24),  # Wan 2.2 TI2V 5B: VAE 16x, patch 2; 24 fps
    "ltx": (32, 8, 24),  # LTX-Video: VAE 32x spatial, 8x temporal; 24 fps
}
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """One upstream provider (or ``preview``, the built-in renderer)."""

    kind: Literal["ark", "cometapi", "openai", "preview"]
    base_url: str = ""  # e.g. https://ark.ap-southeast.bytepluses.com/api/v3
    region: str = ""  # informational (shown in /v1/models), e.g. ap-southeast
    api_key_env: str = ""  # the NAME of the environment variable holding the key
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds to wait for an answer
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    max_concurrent: int = Field(default=20, ge=1, le=100_000)  # upstream tasks in flight
    requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    image_input: Literal["data_url", "signed_url"] = "data_url"  # how images travel
    callback: bool = False  # ask the provider to call back (a hint to poll at once)
    resubmit_lost: bool = False  # the operator's say-so to resubmit a lost submission
    watermark: bool | None = None  # Ark: the provider's default when unset
    max_video_bytes: int = Field(default=1024**3, ge=1024)  # re-host refuses bigger videos

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ProviderConfig:
        if self.kind in REMOTE_KINDS:
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError("base_url must be an http:// or https:// URL")
            if not self.api_key_env:
                raise ValueError("api_key_env must name the environment variable with the key")
        return self


class RouteConfig(_Strict):
    """One way to serve a public model: a provider and its model id there."""

    provider: str
    model: str = ""  # the provider's model id; default: the public id


class WatchConfig(_Strict):
    """How upstream tasks are polled and their videos re-hosted."""

    min_interval: float = Field(default=2.0, gt=0, le=3600)  # seconds between polls, at least
    max_interval: float = Field(default=30.0, gt=0, le=3600)  # and at most
    batch: int = Field(default=500, ge=1, le=10_000)  # tasks taken over per statement
    concurrency: int = Field(default=64, ge=1, le=10_000)  # upstream requests in flight
    rehost_concurrency: int = Field(default=16, ge=1, le=256)  # downloads in flight
    max_faults: int = Field(default=10, ge=1, le=1000)  # transient faults in a row, then ERROR
    max_submit_tries: int = Field(default=8, ge=1, le=1000)  # refusals to accept, then ERROR
    poller_ttl: float = Field(default=30.0, ge=1, le=3600)  # silent this long: taken for dead

    @model_validator(mode="after")
    def _intervals_in_order(self) -> WatchConfig:
        if self.max_interval < self.min_interval:
            raise ValueError("max_interval must be at least min_interval")
        return self


class LocalModelConfig(_Strict):
    """One public model id served by a diffusers pipeline from a local weights folder."""

    pipeline: PipelineKind
    weights: Path  # a diffusers folder (model_index.json and one folder per component)
    description: str = ""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = "cuda"  # "cuda", "cuda:N" or "cpu"; ``reelgate worker --device`` overrides
    steps: int = Field(default=30, ge=1, le=1000)  # denoising steps of every render
    guidance: float = Field(default=5.0, ge=0, le=50)  # classifier-free guidance scale
    negative_prompt: str = ""
    # Prompt tokens (T5); default: the kind's (Wan 512, LTX 128).
    max_sequence_length: int | None = Field(default=None, ge=1, le=4096)
    fps: int | None = Field(default=None, ge=1, le=120)  # default: the pipeline kind's
    resolutions: list[Literal["480p", "720p", "1080p"]] = Field(default=["480p"], min_length=1)
    min_seconds: int = Field(default=1, ge=1, le=60)
    max_seconds: int = Field(default=5, ge=1, le=60)
    max_frames: int | None = Field(default=None, ge=2, le=10_000)  # a cap on the frames
    max_area: int | None = Field(default=None, ge=256)  # a cap on the pixels of a frame
    image_input: bool = False  # image to video (wan-ti2v and ltx only)
    cpu_offload: bool = False  # model CPU offload (accelerate): less GPU memory, slower
    vae_tiling: bool = False  # decode in tiles: less GPU memory at high resolutions
    compile: bool = False  # torch.compile the transformer (the first render compiles)
    attention_backend: str = ""  # a diffusers attention backend, e.g. "flash"; "": default

    @model_validator(mode="after")
    def _consistent(self) -> LocalModelConfig:
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.cpu_offload and self.device == "cpu":
            raise ValueError("cpu_offload needs a CUDA device (the model is on the CPU already)")
        if self.image_input and self.pipeline == "wan":
            raise ValueError("image_input needs pipeline wan-ti2v or ltx (wan is text to video)")
        if self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must be at least min_seconds")
        return self

    @property
    def frame_rate(self) -> int:
        """The frames per second of the videos (the configured one, or the kind's)."""
        return self.fps or PIPELINES[self.pipeline][2]

    def spec(self, model_id: str) -> ModelSpec:
        """The catalog entry of this model: its id and the limits of its inputs."""
        description = self.description or f"{model_id}: a local {self.pipeline} model (diffusers)"
        return ModelSpec(
            model_id,
            self.min_seconds,
            self.max_seconds,
            tuple(dict.fromkeys(self.resolutions)),
            self.image_input,
            description,
        )


class GpuConfig(_Strict):
    """How GPU workers share a device."""

    # Renders at once on one device. One is safe; more only where the memory holds
    # every pipeline's peak at once (docs/gpu.md, "Memory").
    renders_per_device: int = Field(default=1, ge=1, le=16)


class PriceConfig(_Strict):
    """What a model's use costs, for the usage report's estimate (GET /v1/usage).

    A SUCCESS task costs ``per_second`` times its seconds plus ``per_million_tokens``
    times the upstream tokens it used (where its provider reports them), in ``currency``.
    """

    per_second: float = Field(default=0.0, ge=0, le=1_000_000)
    per_million_tokens: float = Field(default=0.0, ge=0, le=1_000_000)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class Config(_Strict):
    """The whole file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, list[RouteConfig]] = Field(default_factory=dict)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    local_models: dict[str, LocalModelConfig] = Field(default_factory=dict)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)  # public model id -> price

    @model_validator(mode="after")
    def _routes_name_providers(self) -> Config:
        for model, routes in self.routes.items():
            if not routes:
                raise ValueError(f"routes.{model}: give at least one route")
            kinds = {
                self.providers[r.provider].kind for r in routes if r.provider in self.providers
            }
            for route in routes:
                if route.provider not in self.providers:
                    raise ValueError(
                        f"routes.{model}: unknown provider {route.provider!r}; "
                        f"declared: {', '.join(self.providers) or 'none'}"
                    )
            if "preview" in kinds and len(routes) > 1:
                raise ValueError(f"routes.{model}: a preview route must be the only one")
            if model in self.local_models:
                raise ValueError(f"routes.{model}: the model is a local model; give it no route")
        return self

    def local_specs(self) -> tuple[ModelSpec, ...]:
        """The catalog entries of the local models."""
        return tuple(local.spec(model) for model, local in self.local_models.items())

    def remote_routes(self) -> dict[str, list[tuple[str, str]]]:
        """Public model id -> ordered (provider, upstream model id), remote routes only."""
        return {
            model: [(r.provider, r.model or model) for r in routes]
            for model, routes in self.routes.items()
            if self.providers[routes[0].provider].kind in REMOTE_KINDS
        }

    def api_keys(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Each routed remote provider's key, read from the variable it names."""
        environ = os.environ if environ is None else environ
        keys = {}
        routed = {name for routes in self.remote_routes().values() for name, _ in routes}
        for name, provider in self.providers.items():
            if name not in routed:
                continue
            value = environ.get(provider.api_key_env, "")
            if not value:
                raise ConfigError(
                    f"provider {name!r}: the environment variable {provider.api_key_env} "
                    "(api_key_env) is not set or empty"
                )
            keys[name] = value
        return keys


def load_config(path: str | Path | None, *, models: Sequence[str] = ()) -> Config:
    """Read and validate the file at ``path``; an empty config when ``path`` is empty.

    ``models`` are the public model ids; a route for another id is refused.
    """
    if not path:
        return Config()
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        named = _NAMED.match(message)
        if not loc and named:  # a check across tables names its field in the message
            loc, message = tuple(named.group(1).split(".", 1)), named.group(2)
        field = ".".join(str(part) for part in loc) or "(top level)"
        line = _line_of(text, loc)
        raise ConfigError(f"{path}:{line}: {field}: {message}") from None
    known = set(models) | set(config.local_models)
    unknown = sorted(set(config.routes) - known) if models else []
    if unknown:
        line = _line_of(text, ("routes", unknown[0]))
        raise ConfigError(
            f"{path}:{line}: routes.{unknown[0]}: unknown model; the catalog has "
            f"{', '.join([*models, *config.local_models])}"
        )
    return config


_NAMED = re.compile(r"(routes\.[^:]+): (.*)", re.S)


def _line_of(text: str, loc: tuple[object, ...]) -> int:
    """The line (1-based) that best matches a field's location; 1 when unsure."""
    names = [str(part) for part in loc if not isinstance(part, int)]
    indexes = [part for part in loc if isinstance(part, int)]
    lines = text.splitlines()
    best = 1
    # The deepest table header that matches a prefix of the location, then the key.
    for depth in range(len(names), 0, -1):
        header = r"\.".join(rf"\s*\"?{re.escape(n)}\"?\s*" for n in names[:depth])
        pattern = re.compile(rf"^\s*\[\[?{header}\]\]?\s*(#.*)?$")
        hits = [number for number, line in enumerate(lines, 1) if pattern.match(line)]
        if hits:
            start = hits[min(indexes[0], len(hits) - 1)] if indexes else hits[0]
            best = start
            rest = names[depth:]
            if rest:
                key = re.compile(rf"^\s*\"?{re.escape(rest[-1])}\"?\s*=")
                for number in range(start + 1, len(lines) + 1):
                    if lines[number - 1].lstrip().startswith("["):
                        break
                    if key.match(lines[number - 1]):
                        return number
            return best
    # No header: a dotted or inline key anywhere.
    if names:
        bare = re.compile(rf"^\s*\"?{re.escape(names[-1])}\"?\s*=")
        for number, line in enumerate(lines, 1):
            if bare.match(line):
                return number
    return best
