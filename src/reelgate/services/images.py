"""Checks of an uploaded ``input_reference`` image, by decoding it."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from reelgate.domain.errors import InvalidParameter, PayloadTooLarge

FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000
MIN_SIDE = 16


def check_image(data: bytes, max_bytes: int) -> str:
    """Decode ``data`` fully; return its file extension or raise the contract's error."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"input_reference is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    if not data:
        raise InvalidParameter("input_reference is an empty file", param="input_reference")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidParameter(
                    f"input_reference is {width}x{height}; at most {MAX_PIXELS} pixels",
                    param="input_reference",
                )
            image.load()
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise InvalidParameter(
            "input_reference must be a JPEG, PNG or WebP image that decodes",
            param="input_reference",
        ) from exc
    if min(width, height) < MIN_SIDE:
        raise InvalidParameter(
            f"input_reference is {width}x{height}; each side needs at least {MIN_SIDE} pixels",
            param="input_reference",
        )
    return FORMATS[str(image.format)]
