"""Checks of an uploaded ``input_reference`` image: its header, then a bounded decode.

The limits (API.md, docs/api.md):

- JPEG, PNG or WebP, at most ``max_bytes`` as uploaded;
- each side from ``MIN_SIDE`` (16) to ``MAX_SIDE`` (6000) pixels, as Seedance takes
  up to about 6000 pixels a side, and at most ``MAX_PIXELS`` (36 million) in all.

The size comes from the header (``Image.open`` reads nothing more), so an image over
the limits is refused before any pixel is decoded: a small file can declare a huge
image. An image within them is decoded once, to prove that it is whole: a JPEG at an
eighth of its size (``draft``: every block is still read), PNG and WebP in full.
Checks run one at a time, on a thread of their own (``DECODERS``), so that parallel
uploads cannot add up: the memory of all decodes stays under that of one image at
the limits, about ``MAX_PIXELS`` x 4 bytes (150 MB), twice that for WebP. A small
image is checked in milliseconds; one at the limits in about a third of a second.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError

from reelgate.domain.errors import InvalidParameter, PayloadTooLarge

FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
EXTENSIONS = {**FORMATS, "MPO": "jpg"}  # Pillow calls a JPEG with MPF data "MPO"
MAX_SIDE = 6000
MAX_PIXELS = 36_000_000  # 6000 x 6000
MIN_SIDE = 16
DECODERS = 1  # two decoders hold twice the memory, and are not faster
_PARAM = "input_reference"
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


_decoders = ThreadPoolExecutor(max_workers=DECODERS, thread_name_prefix="image-check")


async def verify_image(data: bytes, max_bytes: int) -> str:
    """``check_image`` on the decoder thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_decoders, check_image, data, max_bytes)


def check_image(data: bytes, max_bytes: int) -> str:
    """Check ``data`` as described above and return its file extension.

    Raises the contract's errors: ``PayloadTooLarge``, or ``InvalidParameter`` naming
    ``input_reference``.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"input_reference is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    if not data:
        raise InvalidParameter("input_reference is an empty file", param=_PARAM)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
                width, height = image.size
                _check_size(width, height)
                extension = EXTENSIONS.get(str(image.format))
                if extension is None:
                    raise ValueError(f"unexpected format {image.format}")
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
    except _DECODE_ERRORS as exc:
        raise InvalidParameter(
            "input_reference must be a JPEG, PNG or WebP image that decodes", param=_PARAM
        ) from exc
    return extension


def _check_size(width: int, height: int) -> None:
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise InvalidParameter(
            f"input_reference is {width}x{height} pixels; at most {MAX_SIDE} pixels a side "
            f"and {MAX_PIXELS // 1_000_000} million pixels in all are allowed",
            param=_PARAM,
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidParameter(
            f"input_reference is {width}x{height} pixels; each side needs at least "
            f"{MIN_SIDE} pixels",
            param=_PARAM,
        )
