"""The preview renderer's pictures: sized, deterministic, moving, and the image first."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageOps

from reelgate.domain.errors import RenderRejected
from reelgate.renderers.frames import Scene, make_scene

WIDTH, HEIGHT, FPS = 320, 180, 24


def rgb(scene: Scene, index: int) -> npt.NDArray[np.int16]:
    """Frame ``index`` as rgb24, widened so that differences do not wrap."""
    return scene.frame(index).to_ndarray(format="rgb24").astype(np.int16)


def text_scene(prompt: str, width: int = WIDTH, height: int = HEIGHT) -> Scene:
    return make_scene(prompt, width=width, height=height, fps=FPS, frames=2 * FPS)


def image_bytes(image_format: str, size: tuple[int, int] = (400, 300)) -> bytes:
    """A picture with edges and colours, in ``image_format``."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 30, 200, 150), fill=(200, 40, 40))
    draw.ellipse((220, 120, 380, 280), fill=(30, 160, 220))
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def covered(data: bytes, width: int = WIDTH, height: int = HEIGHT) -> npt.NDArray[np.int16]:
    """The image scaled and cropped to cover the frame, as rgb24."""
    with Image.open(io.BytesIO(data)) as image:
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    return np.asarray(fitted).astype(np.int16)


def test_frames_are_yuv420p_of_the_size_asked() -> None:
    frame = text_scene("a cat on a sofa").frame(0)
    assert (frame.width, frame.height, frame.format.name) == (WIDTH, HEIGHT, "yuv420p")


def test_the_same_prompt_draws_the_same_pixels() -> None:
    first, second = text_scene("a red fox in the snow"), text_scene("a red fox in the snow")
    for index in (0, 17, 47):
        assert np.array_equal(first.frame(index).to_ndarray(), second.frame(index).to_ndarray())


def test_different_prompts_draw_different_pictures() -> None:
    fox, whale = text_scene("a red fox in the snow"), text_scene("a blue whale at dawn")
    assert np.abs(rgb(fox, 0) - rgb(whale, 0)).mean() > 5


def test_frames_move_over_time() -> None:
    scene = text_scene("a red fox in the snow")
    assert np.abs(rgb(scene, 0) - rgb(scene, 24)).mean() > 0.5


@pytest.mark.parametrize("size", [(854, 480), (480, 854), (1120, 480), (16, 16)])
def test_any_even_size_is_drawn(size: tuple[int, int]) -> None:
    width, height = size
    scene = text_scene("a tall ship " * 40, width, height)
    for index in (0, 47):
        frame = scene.frame(index)
        assert (frame.width, frame.height) == size


def test_an_odd_size_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        text_scene("a cat", 321, 180)


def test_a_huge_prompt_without_spaces_is_drawn() -> None:
    scene = text_scene("x" * 4000 + " [[sandbox:fail]] " + "y" * 4000)
    assert scene.frame(0).width == WIDTH


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_the_image_is_the_first_frame(image_format: str) -> None:
    data = image_bytes(image_format)
    scene = make_scene("zoom", width=WIDTH, height=HEIGHT, fps=FPS, frames=48, image=data)
    expected = covered(data)
    assert np.abs(rgb(scene, 0) - expected).mean() < 4
    assert np.abs(rgb(scene, 47) - expected).mean() > 4  # zoomed in by then


def test_the_image_zooms_slowly() -> None:
    data = image_bytes("PNG")
    scene = make_scene("zoom", width=WIDTH, height=HEIGHT, fps=FPS, frames=48, image=data)
    steps = [np.abs(rgb(scene, index + 1) - rgb(scene, index)).mean() for index in (10, 30)]
    assert all(0 < step < 6 for step in steps)


def test_an_image_that_does_not_decode_is_rejected() -> None:
    with pytest.raises(RenderRejected, match="could not be decoded"):
        make_scene("x", width=WIDTH, height=HEIGHT, fps=FPS, frames=24, image=b"not an image")


def test_an_image_in_another_format_is_rejected() -> None:
    with pytest.raises(RenderRejected):
        make_scene("x", width=WIDTH, height=HEIGHT, fps=FPS, frames=24, image=image_bytes("GIF"))
