"""The mapping of a request to the shapes the open models take (renderers/shapes.py)."""

from __future__ import annotations

import pytest

from reelgate.domain.catalog import SIZES, frame_size
from reelgate.renderers.shapes import fit, fit_frames, fit_size


@pytest.mark.parametrize(
    ("size", "multiple", "expected"),
    [
        ((854, 480), 16, (848, 480)),  # Wan 2.1 at 480p 16:9 (the model's own 832x480 is 1.73)
        ((480, 854), 16, (480, 848)),
        ((854, 480), 32, (864, 480)),  # LTX and Wan 2.2 TI2V
        ((1280, 720), 32, (1312, 736)),
        ((480, 480), 32, (480, 480)),
        ((10, 10), 16, (16, 16)),  # never below one multiple
    ],
)
def test_sizes_are_multiples(
    size: tuple[int, int], multiple: int, expected: tuple[int, int]
) -> None:
    assert fit_size(*size, multiple) == expected


@pytest.mark.parametrize("ratio", SIZES)
@pytest.mark.parametrize("resolution", ["480p", "720p", "1080p"])
@pytest.mark.parametrize("multiple", [16, 32])
def test_aspect_is_kept(ratio: str, resolution: str, multiple: int) -> None:
    width, height = frame_size(ratio, resolution)
    new_width, new_height = fit_size(width, height, multiple)
    assert new_width % multiple == 0 and new_height % multiple == 0
    assert (new_width >= new_height) == (width >= height)
    # within half a multiple on each side of the short side's scale
    assert new_width / new_height == pytest.approx(
        width / height, rel=multiple / min(width, height)
    )


def test_area_cap_scales_down_keeping_the_aspect() -> None:
    width, height = fit_size(1920, 1080, 16, max_area=832 * 480)
    assert width * height <= 832 * 480 * 1.05
    assert width / height == pytest.approx(16 / 9, rel=0.03)
    assert fit_size(640, 360, 16, max_area=10**6) == (656, 368)  # no cap below it


@pytest.mark.parametrize(
    ("seconds", "fps", "step", "expected"),
    [
        (5, 16, 4, 81),  # Wan 2.1: 5 s at 16 fps
        (5, 24, 4, 121),  # Wan 2.2 TI2V: 5 s at 24 fps
        (5, 24, 8, 121),  # LTX: 8k+1
        (4, 24, 8, 97),
        (2, 24, 8, 49),
        (1, 8, 8, 9),
        (0, 8, 4, 5),  # at least step + 1
    ],
)
def test_frame_counts(seconds: int, fps: int, step: int, expected: int) -> None:
    frames = fit_frames(seconds, fps, step)
    assert frames == expected and (frames - 1) % step == 0


def test_frames_capped() -> None:
    assert fit_frames(10, 24, 8, max_frames=161) == 161
    assert fit_frames(10, 24, 8, max_frames=160) == 153
    shape = fit(854, 480, 10, fps=16, multiple=16, frame_step=4, max_frames=81)
    assert (shape.width, shape.height, shape.frames, shape.fps) == (848, 480, 81, 16)


def test_nonsense_refused() -> None:
    with pytest.raises(ValueError):
        fit_size(0, 480, 16)
    with pytest.raises(ValueError):
        fit_frames(5, 0, 4)
