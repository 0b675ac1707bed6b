"""The model catalog and the validation rules of a create request (API.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from reelgate.domain.errors import InvalidParameter, UnsupportedTaskType

SIZES: tuple[str, ...] = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
DEFAULT_SIZE = "16:9"
DEFAULT_RESOLUTION = "720p"
DEFAULT_SECONDS = 5
FPS = 24
PROMPT_MAX_CHARS = 4000
LINES = {"480p": 480, "720p": 720, "1080p": 1080}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model id and the limits of its inputs."""

    id: str
    min_seconds: int
    max_seconds: int
    resolutions: tuple[str, ...]
    image_input: bool
    description: str = ""

    def check(self, *, seconds: int, size: str, resolution: str, has_image: bool) -> None:
        """Raise the contract's error for the first input outside this model's limits."""
        if not self.min_seconds <= seconds <= self.max_seconds:
            raise InvalidParameter(
                f"seconds must be an integer from {self.min_seconds} to {self.max_seconds} "
                f"for model {self.id}, got {seconds}",
                param="seconds",
            )
        if size not in SIZES:
            raise InvalidParameter(
                f"size must be one of {', '.join(SIZES)}, got {size!r}", param="size"
            )
        if resolution not in self.resolutions:
            raise InvalidParameter(
                f"resolution must be one of {', '.join(self.resolutions)} for model "
                f"{self.id}, got {resolution!r}",
                param="resolution",
            )
        if has_image and not self.image_input:
            raise UnsupportedTaskType(
                f"the specified task_type r2v does not support model {self.id}",
                param="input_reference",
            )


SEEDANCE: tuple[ModelSpec, ...] = (
    ModelSpec(
        "doubao-seedance-2-0", 4, 15, ("480p", "720p"), True, "Seedance 2.0: text or image to video"
    ),
    ModelSpec(
        "doubao-seedance-2-0-fast",
        4,
        15,
        ("480p", "720p"),
        True,
        "Seedance 2.0 fast: text or image to video",
    ),
    ModelSpec(
        "doubao-seedance-1-5-pro",
        4,
        12,
        ("480p", "720p", "1080p"),
        False,
        "Seedance 1.5 pro: text to video",
    ),
    ModelSpec(
        "doubao-seedance-1-0-pro",
        2,
        10,
        ("480p", "720p", "1080p"),
        False,
        "Seedance 1.0 pro: text to video",
    ),
)


class Catalog:
    """The models a server offers, by id."""

    def __init__(self, specs: tuple[ModelSpec, ...] = SEEDANCE) -> None:
        self._specs = {spec.id: spec for spec in specs}

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def get(self, model_id: str) -> ModelSpec:
        """Return the spec of ``model_id`` or raise ``InvalidParameter`` naming the ids."""
        try:
            return self._specs[model_id]
        except KeyError:
            raise InvalidParameter(
                f"model must be one of {', '.join(self._specs)}, got {model_id!r}",
                param="model",
            ) from None


def frame_size(size: str, resolution: str) -> tuple[int, int]:
    """Width and height in pixels: the short side has the resolution's lines.

    Both are rounded to even numbers, as H.264 in yuv420p needs.
    """
    lines = LINES[resolution]
    w_ratio, h_ratio = (int(part) for part in size.split(":"))
    if w_ratio >= h_ratio:
        width, height = lines * w_ratio / h_ratio, float(lines)
    else:
        width, height = float(lines), lines * h_ratio / w_ratio
    return _even(width), _even(height)


def _even(value: float) -> int:
    return round(value / 2.0) * 2
