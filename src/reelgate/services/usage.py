"""Usage per owner and model over a range of UTC days, with an estimated cost.

The store keeps a daily rollup written when a task ends SUCCESS (failed, errored and
cancelled tasks are never charged), so a report reads at most days x owners x models
rows, however many tasks the store holds. The cost is estimated at read time from
the price table of the configuration file, per public model id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from reelgate.config import PriceConfig
from reelgate.domain.errors import InvalidParameter
from reelgate.domain.quotas import UsageLine, day_of
from reelgate.domain.request import storable_text
from reelgate.ports import Clock, QuotaStore, TaskStore

DEFAULT_DAYS = 30  # a report without a range: the last 30 UTC days, today included
MAX_DAYS = 366 * 5  # a wider range is a typo
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage lines of the UTC days ``start..end`` (both included)."""

    start: dt.date
    end: dt.date
    lines: list[UsageLine]

    def as_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/usage`` and ``GET /v1/admin/usage``."""
        costs: dict[str, float] = {}
        for line in self.lines:
            if line.cost is not None and line.currency is not None:
                costs[line.currency] = round(costs.get(line.currency, 0.0) + line.cost, 6)
        return {
            "object": "usage",
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "data": [
                {
                    "owner": line.owner,
                    "model": line.model,
                    "tasks": line.tasks,
                    "seconds": line.seconds,
                    "tokens": line.tokens,
                    "cost": line.cost,
                    "currency": line.currency,
                }
                for line in self.lines
            ],
            "totals": {
                "tasks": sum(line.tasks for line in self.lines),
                "seconds": sum(line.seconds for line in self.lines),
                "tokens": sum(line.tokens for line in self.lines),
                "cost": costs,
            },
        }


class UsageService:
    """Usage reports over the store's rollup, priced by the configuration."""

    def __init__(self, store: TaskStore, clock: Clock, prices: Mapping[str, PriceConfig]) -> None:
        self._store = cast(QuotaStore, store)
        self._clock = clock
        self._prices = dict(prices)

    def parse_range(self, start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
        """``from`` and ``to`` (``YYYY-MM-DD``, UTC, both included) of a request.

        Default: ``to`` today, ``from`` 29 days before ``to``. ``InvalidParameter`` for a
        malformed date, ``from`` after ``to``, or more than ``MAX_DAYS`` days.
        """
        last = _date("to", end) if end else _EPOCH + dt.timedelta(days=day_of(self._clock()))
        days_back = min(DEFAULT_DAYS - 1, (last - dt.date.min).days)  # no day before year 1
        first = _date("from", start) if start else last - dt.timedelta(days=days_back)
        if first > last:
            raise InvalidParameter("from must not be after to", param="from")
        if (last - first).days >= MAX_DAYS:
            raise InvalidParameter(f"a range covers at most {MAX_DAYS} days", param="from")
        return first, last

    async def report(
        self,
        *,
        start: dt.date,
        end: dt.date,
        owner: str | None = None,
        model: str | None = None,
    ) -> UsageReport:
        """Per owner and model: SUCCESS tasks completed on days ``start..end``, priced."""
        if any(text is not None and not storable_text(text) for text in (owner, model)):
            return UsageReport(start, end, [])  # nothing stored carries such text
        lines = await self._store.usage(
            (start - _EPOCH).days, (end - _EPOCH).days, owner=owner, model=model
        )
        return UsageReport(start, end, [self._priced(line) for line in lines])

    def _priced(self, line: UsageLine) -> UsageLine:
        price = self._prices.get(line.model)
        if price is None:
            return line
        cost = line.seconds * price.per_second + line.tokens * price.per_million_tokens / 1e6
        return replace(line, cost=round(cost, 6), currency=price.currency)


def _date(name: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else _invalid(name)
    except ValueError:
        return _invalid(name)


def _invalid(name: str) -> dt.date:
    raise InvalidParameter(f"{name} must be a date as YYYY-MM-DD (UTC)", param=name)
