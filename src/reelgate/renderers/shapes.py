"""What an open video model is asked to make for a request: frame size and frame count.

Diffusion video models take only some shapes. Wan's transformer patches a latent that
its VAE shrank 8x (Wan 2.1) or 16x (Wan 2.2 TI2V 5B), so width and height must be
multiples of 16 or 32; LTX-Video's VAE shrinks 32x. Their VAEs compress time 4x (Wan)
or 8x (LTX) after a first frame of its own, so a video has ``4k+1`` or ``8k+1`` frames.

A request's size (the catalog's ``frame_size`` of its ratio and resolution) is mapped to
the nearest allowed shape that keeps its aspect ratio: the short side is rounded to the
nearest multiple, the long side is then the multiple nearest to what the ratio asks.
A model may cap the area (``max_area`` pixels per frame): a bigger request is first
scaled down to that area, its aspect ratio kept. Its length, ``seconds`` at the model's
frame rate, is rounded to the nearest allowed
frame count (at least ``step + 1``, at most ``max_frames``). Pure arithmetic: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Shape:
    """The frames a model renders for one request."""

    width: int
    height: int
    frames: int
    fps: int


def fit_size(
    width: int, height: int, multiple: int, max_area: int | None = None
) -> tuple[int, int]:
    """``width`` x ``height`` mapped to multiples of ``multiple``, the aspect ratio kept.

    Scaled down first to about ``max_area`` pixels when it is bigger.
    """
    if width < 1 or height < 1 or multiple < 1:
        raise ValueError(f"cannot fit {width}x{height} to multiples of {multiple}")
    scale = 1.0
    if max_area is not None and width * height > max_area:
        scale = math.sqrt(max_area / (width * height))
    short, long = min(width, height) * scale, max(width, height) * scale
    new_short = max(multiple, _nearest(short, multiple))
    new_long = max(multiple, _nearest(long * new_short / short, multiple))
    return (new_long, new_short) if width >= height else (new_short, new_long)


def fit_frames(seconds: float, fps: int, step: int, max_frames: int | None = None) -> int:
    """The frame count ``step * k + 1`` nearest to ``seconds`` at ``fps`` (``k >= 1``).

    Capped at the largest such count not above ``max_frames``, when given.
    """
    if fps < 1 or step < 1:
        raise ValueError(f"cannot count frames at {fps} fps in steps of {step}")
    k = max(1, _nearest(seconds * fps - 1, step) // step)
    if max_frames is not None:
        k = max(1, min(k, (max_frames - 1) // step))
    return k * step + 1


def fit(
    width: int,
    height: int,
    seconds: float,
    *,
    fps: int,
    multiple: int,
    frame_step: int,
    max_frames: int | None = None,
    max_area: int | None = None,
) -> Shape:
    """The ``Shape`` a model with these constraints renders for a request."""
    new_width, new_height = fit_size(width, height, multiple, max_area)
    return Shape(new_width, new_height, fit_frames(seconds, fps, frame_step, max_frames), fps)


def _nearest(value: float, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``value`` (halves round up)."""
    return int(value / multiple + 0.5) * multiple
