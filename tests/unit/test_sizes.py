"""Pixel sizes (``WxH``): the nearest catalog ratio and resolution, and what is refused."""

from __future__ import annotations

import pytest

from reelgate.domain.catalog import Catalog
from reelgate.domain.errors import InvalidParameter
from reelgate.domain.request import parse_create
from reelgate.domain.sizes import is_pixels, parse_pixels, pixels

TWO = ("480p", "720p")  # Seedance 2.0
THREE = ("480p", "720p", "1080p")  # Seedance 1.5 pro, 1.0 pro
CATALOG = Catalog()


@pytest.mark.parametrize(
    ("size", "resolutions", "ratio", "resolution"),
    [
        ("1280x720", TWO, "16:9", "720p"),
        ("720x1280", TWO, "9:16", "720p"),
        ("1024x1792", TWO, "9:16", "720p"),
        ("1024x1792", THREE, "9:16", "1080p"),
        ("1792x1024", TWO, "16:9", "720p"),
        ("1792x1024", THREE, "16:9", "1080p"),
        ("480x480", TWO, "1:1", "480p"),
        ("854x480", TWO, "16:9", "480p"),
        ("480x854", THREE, "9:16", "480p"),
        ("1920x1080", TWO, "16:9", "720p"),
        ("1920x1080", THREE, "16:9", "1080p"),
        ("1080x1920", THREE, "9:16", "1080p"),
        ("3840x2160", THREE, "16:9", "1080p"),
        ("1680x720", TWO, "21:9", "720p"),
        ("2560x1080", THREE, "21:9", "1080p"),
        ("1024x768", TWO, "4:3", "720p"),
        ("768x1024", THREE, "3:4", "720p"),
        ("1024x1024", THREE, "1:1", "1080p"),
        ("600x600", TWO, "1:1", "720p"),  # a tie between 480 and 720 lines: the larger
        ("2000x1000", TWO, "16:9", "720p"),  # 2:1 lies nearer 16:9 than 21:9
        ("4000x1000", TWO, "21:9", "720p"),  # the bound itself (4:1) is allowed
        ("1000x4000", TWO, "9:16", "720p"),
        ("16x16", TWO, "1:1", "480p"),
        ("1280X720", TWO, "16:9", "720p"),
    ],
)
def test_mapping(size: str, resolutions: tuple[str, ...], ratio: str, resolution: str) -> None:
    assert is_pixels(size)
    mapped = parse_pixels(size, resolutions)
    assert (mapped.ratio, mapped.resolution) == (ratio, resolution)


@pytest.mark.parametrize(
    "size",
    [
        "0x0",
        "0x720",
        "99999x1",
        "15x15",
        "8193x4096",
        "4001x1000",  # beyond 4:1
        "1000x4001",
        "123456789x1",
        "axb",
        "1280x",
        "x720",
        "1280*720",
        "-1280x720",
        "1280x720x3",
        "1280 x 720",
        "1280\u00d7720",  # a multiplication sign
        "16:10",
        "2:1",
        "wide",
    ],
)
def test_nonsense_is_refused_naming_size(size: str) -> None:
    fields = {"prompt": "a fox", "model": "doubao-seedance-2-0", "size": size}
    with pytest.raises(InvalidParameter) as caught:
        parse_create(fields, has_image=False, catalog=CATALOG)
    assert caught.value.param == "size"
    assert size in caught.value.message or repr(size) in caught.value.message


@pytest.mark.parametrize(
    ("fields", "size", "resolution"),
    [
        ({"size": "1280x720"}, "16:9", "720p"),
        ({"size": "720x1280", "resolution": "480p"}, "9:16", "480p"),  # explicit wins
        ({"size": "480x480", "resolution": "720p"}, "1:1", "720p"),
        ({"size": "1920x1080", "model": "doubao-seedance-1-5-pro"}, "16:9", "1080p"),
        ({"size": "16:9"}, "16:9", "720p"),  # today's inputs: unchanged
        ({"size": "9:16", "resolution": "480p"}, "9:16", "480p"),
        ({}, "16:9", "720p"),
    ],
)
def test_parse_create_stores_the_ratio(fields: dict[str, str], size: str, resolution: str) -> None:
    request = parse_create(
        {"prompt": "a fox", "model": "doubao-seedance-2-0", **fields},
        has_image=False,
        catalog=CATALOG,
    )
    assert (request.size, request.resolution) == (size, resolution)


def test_an_explicit_resolution_the_model_lacks_is_refused() -> None:
    fields = {"prompt": "a", "model": "doubao-seedance-2-0", "size": "1920x1080"}
    with pytest.raises(InvalidParameter) as caught:
        parse_create({**fields, "resolution": "1080p"}, has_image=False, catalog=CATALOG)
    assert caught.value.param == "resolution"


@pytest.mark.parametrize(
    ("ratio", "resolution", "shown"),
    [
        ("16:9", "720p", "1280x720"),
        ("9:16", "720p", "720x1280"),
        ("16:9", "480p", "854x480"),
        ("1:1", "1080p", "1080x1080"),
        ("21:9", "720p", "1680x720"),
    ],
)
def test_pixels_of_a_stored_size(ratio: str, resolution: str, shown: str) -> None:
    assert pixels(ratio, resolution) == shown
