"""Retention: how long a finished task's files are kept, and what storage holds now.

Two kinds of files age separately: a task's *outputs* (each attempt's video and its
thumbnail) and its *input* (the uploaded image of an image-to-video task). Both age
from the task's ``completed_at``: a task that has not finished keeps everything, so
nothing a render or an upstream still needs is ever deleted. The janitor
(``services.retention``) marks a task's files expired, then deletes them; the task
itself stays readable, with no video link and a field that says its files expired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

LEASE = "retention"  # the name of the janitor's lease (``TaskStore.take_lease``)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")


class FileKind(StrEnum):
    """Which of a task's files a retention rule covers."""

    OUTPUTS = "outputs"  # the videos and thumbnails of every attempt
    INPUTS = "inputs"  # the input image of an image-to-video task


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as ``"30d"``, ``"12h"``, ``"1w2d"``; None for ``""``/``"off"``.

    Raises ``ValueError`` for anything else (a number needs its unit: s, m, h, d or w).
    """
    cleaned = text.strip().lower()
    if cleaned in ("", "off", "0"):
        return None
    position, total = 0, 0
    for match in _DURATION.finditer(cleaned):
        if cleaned[position : match.start()].strip():
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position == 0 or cleaned[position:].strip() or total == 0:
        raise ValueError(
            f"expected a duration such as 30d, 12h or 1w2d (units s, m, h, d, w), or off; "
            f"got {text[:40]!r}"
        )
    return float(total)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of file is kept after its task finished (None: for ever)."""

    outputs: float | None = None
    inputs: float | None = None

    def age(self, kind: FileKind) -> float | None:
        return self.outputs if kind is FileKind.OUTPUTS else self.inputs

    @property
    def active(self) -> bool:
        return self.outputs is not None or self.inputs is not None


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """The files kept now, from the sizes recorded as they were stored.

    ``videos`` counts tasks whose video is kept (with its thumbnail; ``video_bytes``
    counts both); ``inputs`` the input images kept. Files stored before migration 0009
    recorded no size: they are not counted.
    """

    videos: int = 0
    video_bytes: int = 0
    inputs: int = 0
    input_bytes: int = 0

    @property
    def total_files(self) -> int:
        return self.videos + self.inputs

    @property
    def total_bytes(self) -> int:
        return self.video_bytes + self.input_bytes
