"""Deterministic pictures for the preview renderer, drawn straight into yuv420p planes.

A SHA-256 of the prompt seeds the background gradient and a few shapes (circles and
rounded rectangles) drifting on slow Lissajous paths. The prompt is written, wrapped,
on a translucent panel at the bottom; a timecode ``MM:SS.FF`` (``FF`` the frame in its
second) and the frame number ``#NNNN`` sit in the top-left corner. With an input image
the first frame is the image scaled and cropped to cover the frame, then the picture
slowly zooms towards a point the seed picks ("Ken Burns"), with the timecode on.

For speed everything static (background, text panel, shape masks, timecode glyphs) is
computed once per video in BT.601 limited-range Y, U and V planes, the encoder's own
format. A frame then costs a copy of the static planes and integer blends on the small
tiles the shapes cover, or, for an image, one libswscale scale of a crop per plane.
"""

from __future__ import annotations

import abc
import colorsys
import functools
import hashlib
import io
import math
import random

import av
import numpy as np
import numpy.typing as npt
from av.video.plane import VideoPlane
from PIL import Image, ImageDraw, ImageFont, ImageOps

from reelgate.domain.errors import RenderRejected

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
F64 = npt.NDArray[np.float64]
Planes = tuple[U8, U8, U8]
YUV = tuple[float, float, float]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

WHITE_Y, BLACK_Y, NEUTRAL, TIMECODE_Y = 235, 16, 128, 24
PANEL_OPACITY, SHAPE_OPACITY = 0.62, 0.9
PANEL_MAX_LINES = 4
ZOOM = 0.12  # how much the image has zoomed in by the last frame
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


class Seed:
    """Reproducible numbers drawn from a prompt (stable across Python versions)."""

    def __init__(self, prompt: str) -> None:
        digest = hashlib.sha256(prompt.encode("utf-8", "replace")).digest()
        self._random = random.Random(int.from_bytes(digest, "big"))

    def uniform(self, low: float, high: float) -> float:
        """A number in ``[low, high)``."""
        return low + (high - low) * self._random.random()


class Scene(abc.ABC):
    """The frames of one video; build one with ``make_scene``."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError(f"frame size must be even and at least 16x16, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        self._timecode = _Timecode(min(width, height), fps)

    def frame(self, index: int) -> av.VideoFrame:
        """Frame ``index`` (0-based) as a new yuv420p frame, without a timestamp."""
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        self._draw(index, _plane_views(frame))
        return frame

    @abc.abstractmethod
    def _draw(self, index: int, planes: Planes) -> None: ...


def make_scene(
    prompt: str, *, width: int, height: int, fps: int, frames: int, image: bytes | None = None
) -> Scene:
    """The scene of a text-to-video job, or of an image-to-video job when ``image`` is given.

    Raises ``RenderRejected`` when ``image`` is not a JPEG, PNG or WebP that decodes.
    """
    seed = Seed(prompt)
    if image is None:
        return TextScene(prompt, seed, width=width, height=height, fps=fps)
    return ImageScene(image, seed, width=width, height=height, fps=fps, frames=frames)


class TextScene(Scene):
    """A seeded gradient with drifting shapes, the prompt on a panel, and the timecode."""

    def __init__(self, prompt: str, seed: Seed, *, width: int, height: int, fps: int) -> None:
        super().__init__(width, height, fps)
        short = min(width, height)
        hue = seed.uniform(0.0, 1.0)
        start = _yuv(colorsys.hsv_to_rgb(hue, seed.uniform(0.5, 0.8), seed.uniform(0.35, 0.55)))
        end_hue = (hue + seed.uniform(0.25, 0.5)) % 1.0
        end = _yuv(colorsys.hsv_to_rgb(end_hue, seed.uniform(0.5, 0.8), seed.uniform(0.15, 0.3)))
        background = _gradient(width, height, seed.uniform(0.0, 2 * math.pi), start, end)
        self._shapes = [_Shape(seed, width, height) for _ in range(int(seed.uniform(3, 6)))]
        self._panel = _text_panel(prompt, width, height, _font(max(10, short // 22)))
        self._background = tuple(plane.astype(np.uint16) for plane in background)
        static = [] if self._panel is None else [self._panel]
        self._base = tuple(self._tile(k, (0, 0, width, height), static) for k in range(3))

    def _draw(self, index: int, planes: Planes) -> None:
        for plane, base in zip(planes, self._base, strict=True):
            np.copyto(plane, base)
        shapes = [(shape.layer, *shape.position(index / self.fps)) for shape in self._shapes]
        layers = shapes if self._panel is None else [*shapes, self._panel]
        for shape in shapes:
            x0, y0, x1, y1 = _extent(shape)
            rect = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
            if rect[0] >= rect[2] or rect[1] >= rect[3]:
                continue
            over = [layer for layer in layers if _meets(_extent(layer), rect)]
            for k, plane in enumerate(planes):
                x0, y0, x1, y1 = (edge // (1 if k == 0 else 2) for edge in rect)
                plane[y0:y1, x0:x1] = self._tile(k, rect, over)
        self._timecode.paste(planes, index)

    def _tile(self, k: int, rect: tuple[int, int, int, int], layers: list[Placed]) -> U8:
        """Plane ``k``'s pixels in the luma rectangle ``rect``: background, then ``layers``."""
        s = 1 if k == 0 else 2
        tx, ty = rect[0] // s, rect[1] // s
        tile = self._background[k][ty : rect[3] // s, tx : rect[2] // s].copy()
        for layer, x, y in layers:
            _blend(tile, tx, ty, layer[k], x // s, y // s)
        return tile.astype(np.uint8)


class ImageScene(Scene):
    """The input image covering the frame, then a slow zoom into it with the timecode."""

    def __init__(
        self, image: bytes, seed: Seed, *, width: int, height: int, fps: int, frames: int
    ) -> None:
        super().__init__(width, height, fps)
        rgb = av.VideoFrame.from_ndarray(_cover(image, width, height), format="rgb24")
        self._source = tuple(view.copy() for view in _plane_views(rgb.reformat(format="yuv420p")))
        self._last = max(1, frames - 1)
        self._target = (seed.uniform(-1.0, 1.0), seed.uniform(-1.0, 1.0))

    def _draw(self, index: int, planes: Planes) -> None:
        progress = min(index / self._last, 1.0)
        ease = progress * progress * (3 - 2 * progress)
        zoom = 1 + ZOOM * ease
        for source, plane in zip(self._source, planes, strict=True):
            height, width = source.shape
            crop_w, crop_h = round(width / zoom), round(height / zoom)
            if (crop_w, crop_h) == (width, height):
                np.copyto(plane, source)
                continue
            reach = (1 - 1 / (1 + ZOOM)) / 2 * ease  # keeps the crop inside at every zoom
            cx = width * (0.5 + self._target[0] * reach)
            cy = height * (0.5 + self._target[1] * reach)
            x0 = min(max(round(cx - crop_w / 2), 0), width - crop_w)
            y0 = min(max(round(cy - crop_h / 2), 0), height - crop_h)
            window = source[y0 : y0 + crop_h, x0 : x0 + crop_w]
            crop = av.VideoFrame.from_numpy_buffer(window, format="gray")
            scaled = crop.reformat(width=width, height=height, interpolation="BILINEAR")
            np.copyto(plane, _plane_view(scaled.planes[0]))
        if index:
            self._timecode.paste(planes, index)


# A layer blends as ``dst = (dst * keep + paint) >> 8`` per plane: ``keep`` is 256 times
# the share of the pixel below that stays, ``paint`` 256 times the colour added (+128
# to round). Both fit uint16 with the products, since colours stay at or below 240.
Layer = tuple[tuple[U16, U16], tuple[U16, U16], tuple[U16, U16]]
Placed = tuple[Layer, int, int]  # a layer and its even top-left corner in luma pixels


def _extent(placed: Placed) -> tuple[int, int, int, int]:
    layer, x, y = placed
    height, width = layer[0][0].shape
    return x, y, x + width, y + height


def _meets(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _layer(keep: F64, paint: tuple[F64, F64, F64]) -> Layer:
    """Quantise a full-resolution layer; its chroma planes take 2x2 means."""
    half = _halve(keep)
    y, u, v = (
        (np.rint(k * 256).astype(np.uint16), (np.rint(p * 256) + 128).astype(np.uint16))
        for k, p in ((keep, paint[0]), (half, _halve(paint[1])), (half, _halve(paint[2])))
    )
    return y, u, v


def _blend(tile: U16, tx: int, ty: int, layer: tuple[U16, U16], lx: int, ly: int) -> None:
    """Blend ``layer`` placed at (lx, ly) onto ``tile`` placed at (tx, ty), in place."""
    keep, paint = layer
    x0, y0 = max(tx, lx), max(ty, ly)
    x1 = min(tx + tile.shape[1], lx + keep.shape[1])
    y1 = min(ty + tile.shape[0], ly + keep.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    region = tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx]
    region *= keep[y0 - ly : y1 - ly, x0 - lx : x1 - lx]
    region += paint[y0 - ly : y1 - ly, x0 - lx : x1 - lx]
    region >>= 8


class _Shape:
    """A translucent circle or rounded rectangle on a slow Lissajous path."""

    def __init__(self, seed: Seed, frame_w: int, frame_h: int) -> None:
        short = min(frame_w, frame_h)
        size = seed.uniform(0.14, 0.28) * short
        circle = seed.uniform(0, 1) < 0.5
        self.width = _even(size if circle else size * seed.uniform(1.0, 1.7))
        self.height = _even(size)
        radius = min(self.width, self.height) / (2 if circle else 5)
        alpha = _rounded_box(self.width, self.height, radius) * SHAPE_OPACITY
        colour = _yuv(colorsys.hsv_to_rgb(seed.uniform(0, 1), seed.uniform(0.55, 0.9), 0.95))
        self.layer = _layer(1 - alpha, (alpha * colour[0], alpha * colour[1], alpha * colour[2]))
        self._frame = (frame_w, frame_h)
        self._path = [
            (seed.uniform(0.05, 0.2), seed.uniform(0, 2 * math.pi), seed.uniform(0.2, 0.45))
            for _ in range(2)
        ]

    def position(self, seconds: float) -> tuple[int, int]:
        """Even top-left corner at ``seconds`` into the video."""
        (fx, px, ax), (fy, py, ay) = self._path
        frame_w, frame_h = self._frame
        cx = frame_w * (0.5 + ax * math.sin(2 * math.pi * fx * seconds + px))
        cy = frame_h * (0.5 + ay * math.sin(2 * math.pi * fy * seconds + py))
        return _even(cx - self.width / 2), _even(cy - self.height / 2)


class _Timecode:
    """``MM:SS.FF #NNNN`` pasted from a glyph atlas of pre-shaded, equal-width cells."""

    CHARS = "0123456789:.# "

    def __init__(self, short_side: int, fps: int) -> None:
        font = _font(max(10, short_side // 28))
        _, top, _, bottom = font.getbbox("0123456789:.#")
        pad = max(2, (bottom - top) // 3)
        cell_w = _even(max(font.getlength(c) for c in self.CHARS) + 1)
        cell_h = _even(bottom - top + 2 * pad)
        self._glyphs: dict[str, U8] = {}
        for char in self.CHARS:
            cell = Image.new("L", (cell_w, cell_h), 0)
            x = (cell_w - font.getlength(char)) / 2
            ImageDraw.Draw(cell).text((x, pad - top), char, fill=255, font=font)
            ink = np.asarray(cell, dtype=np.float64) / 255
            self._glyphs[char] = np.rint(TIMECODE_Y + (WHITE_Y - TIMECODE_Y) * ink).astype(np.uint8)
        self._fps, self._margin = fps, _even(short_side * 0.04)

    def text(self, index: int) -> str:
        """The label of frame ``index``, e.g. `` 00:02.13 #0061 ``."""
        seconds, frame = divmod(index, self._fps)
        return f" {seconds // 60:02d}:{seconds % 60:02d}.{frame:02d} #{index:04d} "

    def paste(self, planes: Planes, index: int) -> None:
        """Overwrite the top-left corner of ``planes`` with frame ``index``'s label."""
        strip = np.hstack([self._glyphs[char] for char in self.text(index)])
        y_plane, u_plane, v_plane = planes
        m = self._margin
        h = min(strip.shape[0], y_plane.shape[0] - m)
        w = min(strip.shape[1], y_plane.shape[1] - m)
        y_plane[m : m + h, m : m + w] = strip[:h, :w]
        for plane in (u_plane, v_plane):
            plane[m // 2 : (m + h) // 2, m // 2 : (m + w) // 2] = NEUTRAL


def _text_panel(prompt: str, width: int, height: int, font: Font) -> Placed | None:
    """The prompt, wrapped in white on a dark translucent box at the bottom, and its place."""
    margin = _even(min(width, height) * 0.04)
    pad = _even(font.getbbox("Ag")[3] * 0.5)
    _, top, _, bottom = font.getbbox("Agjy|")
    line_h = round(bottom * 1.15)
    fits = int((height * 0.45 - 2 * pad - (bottom - top)) // line_h) + 1
    panel_w = width - 2 * margin
    lines = _wrap(prompt, font, panel_w - 2 * pad, max(1, min(PANEL_MAX_LINES, fits)))
    if not lines:
        return None
    panel_h = min(_even(line_h * (len(lines) - 1) + bottom - top + 2 * pad), height - 2 * margin)
    text = Image.new("L", (panel_w, panel_h), 0)
    draw = ImageDraw.Draw(text)
    for row, line in enumerate(lines):
        draw.text((pad, pad - top + row * line_h), line, fill=255, font=font)
    ink = np.asarray(text, dtype=np.float64) / 255
    box = _rounded_box(panel_w, panel_h, pad) * PANEL_OPACITY
    keep = (1 - box) * (1 - ink)
    paint_y = BLACK_Y * box * (1 - ink) + WHITE_Y * ink
    paint_c = NEUTRAL * (1 - keep)
    return _layer(keep, (paint_y, paint_c, paint_c)), margin, height - margin - panel_h


def _wrap(text: str, font: Font, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; overlong words are cut; a cut-off tail ends in ``...``."""
    lines: list[str] = []
    line, words = "", text.split()[::-1]  # a stack: the next word is last
    while words and len(lines) <= max_lines:
        word = words.pop()
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
        elif line:
            lines.append(line)
            line = ""
            words.append(word)
        else:  # a word wider than the panel: keep a prefix that fits
            cut = max(1, int(len(word) * width / font.getlength(word)))
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            words.append(word[cut:])
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        tail = lines[max_lines - 1]
        while tail and font.getlength(tail + "...") > width:
            tail = tail[:-1]
        lines = [*lines[: max_lines - 1], tail.rstrip() + "..."]
    return lines


def _cover(data: bytes, width: int, height: int) -> U8:
    """Decode an image and scale and crop it to cover ``width`` x ``height`` (rgb24)."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as opened:
            opened.draft("RGB", (width, height))  # JPEG: decode at a reduced scale when it can
            upright = ImageOps.exif_transpose(opened).convert("RGB")
        fitted = ImageOps.fit(upright, (width, height), Image.Resampling.LANCZOS)
    except Exception as exc:  # Pillow's decoders raise many kinds of errors on bad input
        raise RenderRejected(
            f"the input image could not be decoded as JPEG, PNG or WebP ({type(exc).__name__})"
        ) from exc
    return np.asarray(fitted, dtype=np.uint8)


def _gradient(width: int, height: int, angle: float, start: YUV, end: YUV) -> Planes:
    """A linear gradient from ``start`` to ``end`` along ``angle``, with a soft vignette."""
    planes: list[U8] = []
    for k in range(3):
        s = 1 if k == 0 else 2
        ys = ((np.arange(height // s, dtype=np.float32) + 0.5) * (s / height) - 0.5)[:, None]
        xs = ((np.arange(width // s, dtype=np.float32) + 0.5) * (s / width) - 0.5)[None, :]
        plane = xs * math.cos(angle) + ys * math.sin(angle) + 0.5
        np.clip(plane, 0.0, 1.0, out=plane)
        plane *= end[k] - start[k]
        plane += start[k] + 0.5  # + 0.5: the cast to uint8 below then rounds
        if k == 0:  # a soft vignette
            plane = BLACK_Y + (plane - BLACK_Y) * (1 - 0.6 * (xs * xs + ys * ys))
        planes.append(plane.astype(np.uint8))
    return planes[0], planes[1], planes[2]


def _rounded_box(width: int, height: int, radius: float) -> F64:
    """Anti-aliased coverage (0..1) of a rounded rectangle filling ``width`` x ``height``."""
    ys = np.abs(np.arange(height, dtype=np.float64) + 0.5 - height / 2)[:, None]
    xs = np.abs(np.arange(width, dtype=np.float64) + 0.5 - width / 2)[None, :]
    qx, qy = xs - (width / 2 - radius), ys - (height / 2 - radius)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    return np.asarray(np.clip(radius - outside + 0.5, 0.0, 1.0), dtype=np.float64)


def _yuv(rgb: tuple[float, float, float]) -> YUV:
    """BT.601 limited-range Y, U, V of an RGB colour with components in 0..1."""
    r, g, b = rgb
    return (
        16 + 65.481 * r + 128.553 * g + 24.966 * b,
        128 - 37.797 * r - 74.203 * g + 112.0 * b,
        128 + 112.0 * r - 93.786 * g - 18.214 * b,
    )


def _halve(plane: F64) -> F64:
    height, width = plane.shape
    return np.asarray(plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)))


def _even(value: float) -> int:
    return 2 * round(value / 2)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _plane_view(plane: VideoPlane) -> U8:
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


def _plane_views(frame: av.VideoFrame) -> Planes:
    y, u, v = (_plane_view(plane) for plane in frame.planes)
    return y, u, v
