"""Admission control: which route each task waiting for an upstream gets, if any."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reelgate.domain.status import Phase

Route = tuple[str, str]  # (provider name, the provider's model id)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A task that waits to be submitted, as the submit claim reads it."""

    id: str
    model: str
    phase: Phase
    provider: str | None
    upstream_model: str | None
    submitted_at: float | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Pick:
    """A candidate with the route it is submitted on."""

    candidate: Candidate
    provider: str
    upstream_model: str

    @property
    def lost(self) -> bool:
        """An earlier submitter died after recording this intent: the request may be out."""
        return self.candidate.phase is Phase.SUBMITTING


def first_free(
    routes: Sequence[Route],
    in_flight: Mapping[str, int],
    caps: Mapping[str, int],
    tried: Collection[str] = (),
) -> Route | None:
    """The first route, in order, whose provider is under its cap and was not tried."""
    for provider, upstream_model in routes:
        if provider not in tried and in_flight.get(provider, 0) < caps.get(provider, 0):
            return provider, upstream_model
    return None


def assign(
    candidates: Sequence[Candidate],
    in_flight: Mapping[str, int],
    routes: Mapping[str, Sequence[Route]],
    caps: Mapping[str, int],
    limit: int,
) -> list[Pick]:
    """Up to ``limit`` picks, oldest first; a task whose providers are all full waits.

    A lost submission keeps its recorded route (it is already counted in flight).
    """
    counts = dict(in_flight)
    picks: list[Pick] = []
    for candidate in candidates:
        if len(picks) >= limit:
            break
        if candidate.phase is Phase.SUBMITTING and candidate.provider:
            route: Route | None = (candidate.provider, candidate.upstream_model or candidate.model)
        else:
            route = first_free(routes.get(candidate.model, ()), counts, caps)
        if route is None:
            continue
        if candidate.phase is not Phase.SUBMITTING:
            counts[route[0]] = counts.get(route[0], 0) + 1
        picks.append(Pick(candidate, *route))
    return picks
