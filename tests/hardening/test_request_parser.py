"""Properties of the create-request parser over arbitrary input (hypothesis).

Whatever fields arrive (any names, any JSON-like values, any text: NUL, lone
surrogates, huge numbers), ``parse_create`` either returns a request within the
catalog's limits or raises an ``InvalidRequest`` subclass naming the field. Never
anything else, so that no input can turn into a 500.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reelgate.api.errors import envelope
from reelgate.domain.catalog import PROMPT_MAX_CHARS, SIZES, Catalog
from reelgate.domain.errors import InvalidParameter, InvalidRequest, TaskNotFound
from reelgate.domain.request import (
    FIELDS,
    CreateRequest,
    check_task_id,
    parse_create,
    storable_text,
)

CATALOG = Catalog()
MODELS = [spec.id for spec in CATALOG]
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    suppress_health_check=[HealthCheck.too_slow],
)

# any code point, lone surrogates and NUL included (hypothesis leaves out surrogates
# unless asked)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
NASTY_TEXT = st.one_of(
    ANY_TEXT,
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "a\udfffb", "\ud83c\udfac", "🎬"]),
    st.text(st.sampled_from("a \x00\ud800\udc00\t\n"), max_size=10),
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
LEAVES = st.one_of(st.none(), NUMBERS, NASTY_TEXT)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def field_mappings(draw: st.DrawFn) -> dict[str, Any]:
    """Half of the time a valid request, one field of it perhaps spoilt; else any fields."""
    if draw(st.booleans()):
        return draw(st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSONISH, max_size=7))
    spec = draw(st.sampled_from(list(CATALOG)))
    seconds = draw(st.integers(spec.min_seconds, spec.max_seconds))
    fields: dict[str, Any] = {
        "prompt": draw(st.text(min_size=1, max_size=50).filter(str.strip)),
        "model": spec.id,
        "seconds": draw(st.sampled_from([seconds, str(seconds), f" {seconds} ", float(seconds)])),
        "size": draw(st.sampled_from(SIZES)),
        "resolution": draw(st.sampled_from(spec.resolutions)),
    }
    for name in draw(st.sets(st.sampled_from(["seconds", "size", "resolution"]))):
        del fields[name]  # the defaults
    spoil = draw(st.sampled_from([None, *FIELDS, "unknown"]))
    if spoil is not None:
        fields[spoil] = draw(JSONISH)
    return fields


def check_valid(request: CreateRequest, has_image: bool) -> None:
    spec = CATALOG.get(request.model)
    assert spec.min_seconds <= request.seconds <= spec.max_seconds
    assert request.size in SIZES
    assert request.resolution in spec.resolutions
    assert request.prompt.strip() and len(request.prompt) <= PROMPT_MAX_CHARS
    assert storable_text(request.prompt)
    assert spec.image_input or not has_image


def check_refusal(error: InvalidRequest, fields: dict[str, Any]) -> None:
    assert error.message
    assert error.param is not None and (error.param in fields or error.param in FIELDS)
    # the envelope can always carry it, whatever text it echoes
    response = envelope(
        400, error.message, type_="invalid_request_error", code=error.code, param=error.param
    )
    assert response.body


@SETTINGS
@given(fields=field_mappings(), has_image=st.booleans())
@example(fields={"prompt": "a\ud800b", "model": MODELS[0]}, has_image=False)
@example(fields={"prompt": "a\x00b", "model": MODELS[0]}, has_image=False)
@example(fields={"prompt": "a", "model": MODELS[0], "seconds": 10**30}, has_image=False)
@example(fields={"prompt": "a", "model": MODELS[0], "seconds": math.nan}, has_image=False)
@example(fields={"\ud800": 1}, has_image=False)
def test_parse_create_returns_a_valid_request_or_an_invalid_request(
    fields: dict[str, Any], has_image: bool
) -> None:
    try:
        request = parse_create(fields, has_image=has_image, catalog=CATALOG)
    except InvalidRequest as error:
        check_refusal(error, fields)
    else:
        check_valid(request, has_image)


@SETTINGS
@given(prompt=NASTY_TEXT | st.text(st.characters(exclude_categories=()), max_size=4100))
def test_any_prompt_text(prompt: str) -> None:
    fields = {"prompt": prompt, "model": "doubao-seedance-2-0"}
    try:
        request = parse_create(fields, has_image=False, catalog=CATALOG)
    except InvalidRequest as error:
        assert error.param == "prompt"
        if not storable_text(prompt):
            assert type(error) is InvalidParameter
    else:
        assert request.prompt == prompt
        assert storable_text(prompt) and prompt.strip() and len(prompt) <= PROMPT_MAX_CHARS


@SETTINGS
@given(text=st.text(st.characters(exclude_categories=()), max_size=20))
def test_storable_text_is_what_utf8_and_postgresql_carry(text: str) -> None:
    try:
        text.encode("utf-8")
        encodes = True
    except UnicodeEncodeError:
        encodes = False
    assert storable_text(text) == (encodes and "\x00" not in text)
    if storable_text(text):
        assert check_task_id(text) == text
    else:
        try:
            check_task_id(text)
        except TaskNotFound as error:
            assert error.code == "task_not_exist" and error.message == "task_not_exist"
        else:
            raise AssertionError("an id no store can hold must be unknown")
