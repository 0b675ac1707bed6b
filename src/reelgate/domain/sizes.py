"""Pixel sizes (``1280x720``): mapped to the catalog's nearest ratio and resolution.

CometAPI's create takes a ratio (``16:9``) and a resolution (``720p``); OpenAI's
clients, and CometAPI's own webhook guide, send pixels instead. A ``WxH`` size is
read as:

- the ratio: the catalog ratio (``SIZES``) nearest to ``W/H``, compared on a log
  scale (so that ``2:1`` and ``1:2`` are as far from ``1:1``);
- the resolution: the model's resolution whose lines are nearest to the short side
  ``min(W, H)``; on a tie, the larger one.

Each side must be ``MIN_SIDE`` to ``MAX_SIDE`` pixels, and the long side at most
``MAX_ASPECT`` times the short one: anything else is refused, naming ``size``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from reelgate.domain.catalog import LINES, SIZES, frame_size
from reelgate.domain.errors import InvalidParameter

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_ASPECT = 4.0  # the long side over the short one; the catalog spans 21:9 to 9:16
_PIXELS = re.compile(r"([0-9]{1,6})[xX]([0-9]{1,6})")


@dataclass(frozen=True, slots=True)
class PixelSize:
    """A ``WxH`` size as sent, and the catalog ratio and resolution it maps to."""

    width: int
    height: int
    ratio: str
    resolution: str


def is_pixels(size: str) -> bool:
    """True when ``size`` is written as ``WxH`` (digits, ``x``, digits), valid or not."""
    return _PIXELS.fullmatch(size) is not None


def parse_pixels(size: str, resolutions: tuple[str, ...]) -> PixelSize:
    """Map ``WxH`` to the nearest catalog ratio and the nearest of ``resolutions``.

    Raises ``InvalidParameter`` (``param="size"``) for text that is not ``WxH`` or a
    size outside the bounds above.
    """
    match = _PIXELS.fullmatch(size)
    if match is None:
        raise InvalidParameter(
            f"size must be WIDTHxHEIGHT in pixels (e.g. 1280x720), got {size!r}", param="size"
        )
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidParameter(
            f"size {size!r}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels", param="size"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidParameter(
            f"size {size!r}: the long side may be at most {MAX_ASPECT:g} times the short one "
            f"(the ratios offered are {', '.join(SIZES)})",
            param="size",
        )
    return PixelSize(
        width,
        height,
        nearest_ratio(width, height),
        nearest_resolution(min(width, height), resolutions),
    )


def nearest_ratio(width: int, height: int) -> str:
    """The catalog ratio nearest to ``width/height`` on a log scale (first one on a tie)."""
    target = math.log(width / height)
    return min(SIZES, key=lambda ratio: abs(math.log(_value(ratio)) - target))


def nearest_resolution(short_side: int, resolutions: tuple[str, ...]) -> str:
    """The resolution whose lines are nearest to ``short_side``; the larger on a tie."""
    return min(resolutions, key=lambda name: (abs(LINES[name] - short_side), -LINES[name]))


def pixels(size: str, resolution: str) -> str:
    """The frame a stored ratio and resolution render at, as ``WxH`` (``1280x720``)."""
    width, height = frame_size(size, resolution)
    return f"{width}x{height}"


def _value(ratio: str) -> float:
    w_part, h_part = ratio.split(":")
    return int(w_part) / int(h_part)
