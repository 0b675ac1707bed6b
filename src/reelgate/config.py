"""The configuration file (TOML): providers, routes and the watch loop's limits.

Its path comes from ``REELGATE_CONFIG`` (or ``--config``). Without a file every
model renders on the built-in preview renderer, as before. A bad file fails at
start-up with ``ConfigError``, whose message names the file, the line and the
field. API keys are never in the file: a provider names the environment variable
that holds its key (``api_key_env``), read once at start-up and never logged.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REMOTE_KINDS = ("ark", "cometapi", "openai")
KINDS = (*REMOTE_KINDS, "preview")


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


class Config(_Strict):
    """The whole file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, list[RouteConfig]] = Field(default_factory=dict)
    watch: WatchConfig = Field(default_factory=WatchConfig)

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
        return self

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
    unknown = sorted(set(config.routes) - set(models)) if models else []
    if unknown:
        line = _line_of(text, ("routes", unknown[0]))
        raise ConfigError(
            f"{path}:{line}: routes.{unknown[0]}: unknown model; the catalog has "
            f"{', '.join(models)}"
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
