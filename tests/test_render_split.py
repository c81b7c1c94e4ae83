"""Byte truncation and splitting between items, without Jinja.

The render callbacks here are tiny stand-ins for a template: a header line
(with the part marker) and one line per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.render.split import split_into_parts, truncate_utf8, utf8_len

MARKER = "\n…（已截断）"


# --- truncate_utf8 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "max_bytes", "marker", "expected"),
    [
        ("short", 10, "…", "short"),
        ("exactly10!", 10, "…", "exactly10!"),
        ("0123456789", 8, "…", "01234…"),  # "…" is 3 bytes
        # 告 is 3 bytes: 7 - 3 (marker) = 4 bytes leaves room for one char only.
        ("告警告警", 7, "…", "告…"),
        ("告警告警", 9, "…", "告警…"),
        # 😀 is 4 bytes and is never split.
        ("😀😀", 7, "!", "😀!"),
        ("😀😀", 4, "!", "!"),
        # The marker alone does not fit: cut without it rather than exceed.
        ("abcdef", 2, "…", "ab"),
        ("告警", 2, "…", ""),
        ("anything", 0, "…", ""),
        ("", 0, "…", ""),
    ],
)
def test_truncate_utf8(text: str, max_bytes: int, marker: str, expected: str) -> None:
    assert truncate_utf8(text, max_bytes, marker) == expected


@settings(max_examples=300)
@given(st.text(), st.integers(min_value=0, max_value=200), st.sampled_from(["", "…", MARKER, "!"]))
def test_truncate_utf8_never_splits_a_character_nor_exceeds(text: str, max_bytes: int, marker: str) -> None:
    result = truncate_utf8(text, max_bytes, marker)
    data = result.encode("utf-8")  # would raise on a half character (a lone surrogate)
    assert len(data) <= max_bytes
    if utf8_len(text) <= max_bytes:
        assert result == text
        return
    kept = result.removesuffix(marker) if utf8_len(marker) <= max_bytes else result
    assert text.startswith(kept)
    # The longest prefix that fits was kept: one more character would not fit.
    if len(kept) < len(text):
        assert utf8_len(kept + text[len(kept)] + (result[len(kept) :])) > max_bytes


# --- split_into_parts --------------------------------------------------------


def _render(items: Sequence[str], part: int, parts: int) -> str:
    marker = f" ({part}/{parts})" if parts > 1 else ""
    return "\n".join([f"HEADER{marker}", *items])


def test_whole_group_that_fits_is_one_part_without_marker() -> None:
    assert split_into_parts(["a", "b"], _render, 100, MARKER) == ["HEADER\na\nb"]


def test_splits_between_items_and_numbers_parts() -> None:
    items = [f"item-{i:02d}-" + "x" * 10 for i in range(6)]  # 18 bytes each
    # Header "HEADER (k/6)" is 12 bytes; 12 + 2 * 19 = 50 fits, a third item does not.
    parts = split_into_parts(items, _render, 50, MARKER)
    assert parts == [
        "HEADER (1/3)\n" + "\n".join(items[0:2]),
        "HEADER (2/3)\n" + "\n".join(items[2:4]),
        "HEADER (3/3)\n" + "\n".join(items[4:6]),
    ]


def test_packing_reserves_room_for_the_widest_marker() -> None:
    # 12 items, 4 bytes each with their newline. Packed against "HEADER (k/12)"
    # (13 bytes) six fit in 37 bytes; against a marker-less "HEADER" (6 bytes)
    # seven would, and the final "HEADER (1/2)" part would then overflow.
    items = [f"i{i:02d}" for i in range(12)]
    limit = 13 + 6 * 4
    parts = split_into_parts(items, _render, limit, MARKER)
    assert [p.count("\n") for p in parts] == [6, 6]
    assert all(utf8_len(p) <= limit for p in parts)
    assert "…" not in "".join(parts)


def test_an_item_too_big_alone_gets_its_own_truncated_part() -> None:
    items = ["small-1", "告" * 100, "small-2"]
    parts = split_into_parts(items, _render, 60, MARKER)
    assert len(parts) == 3
    assert parts[0] == "HEADER (1/3)\nsmall-1"
    assert parts[1].startswith("HEADER (2/3)\n告告") and parts[1].endswith(MARKER)
    assert utf8_len(parts[1]) <= 60
    assert parts[2] == "HEADER (3/3)\nsmall-2"


def test_a_single_item_too_big_is_truncated_not_split() -> None:
    parts = split_into_parts(["x" * 500], _render, 100, MARKER)
    assert len(parts) == 1
    assert parts[0].startswith("HEADER\nxxx") and parts[0].endswith(MARKER)
    assert utf8_len(parts[0]) <= 100


def test_header_too_big_alone_still_produces_bounded_messages() -> None:
    def render(items: Sequence[str], part: int, parts: int) -> str:
        return "H" * 300 + _render(items, part, parts)

    for items in ([], ["a"], ["a", "b", "c"]):
        parts = split_into_parts(items, render, 100, MARKER)
        assert parts and all(utf8_len(p) <= 100 and p.endswith(MARKER) for p in parts)


def test_template_larger_with_fewer_parts_falls_back_to_one_item_per_part() -> None:
    # A pathological template: the fewer parts, the longer the header. Packing
    # against the widest marker underestimates; the final check must catch it.
    def render(items: Sequence[str], part: int, parts: int) -> str:
        return "\n".join(["H" * (40 - 3 * parts), *items])

    items = [f"item{i}" for i in range(4)]  # 5 bytes each
    parts = split_into_parts(items, render, 40, MARKER)
    assert all(utf8_len(p) <= 40 for p in parts)
    for item in items:
        assert sum(p.count(item) for p in parts) == 1


_ITEM_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="§\n"), max_size=80)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ITEM_TEXT, max_size=40), st.integers(min_value=60, max_value=600))
def test_every_item_in_exactly_one_part_and_every_part_fits(texts: list[str], limit: int) -> None:
    # Each item starts with a unique id no text contains; the 12 leading bytes
    # plus the header always fit, so even a truncated item keeps its id.
    items = [f"§{i:03d}§{text}" for i, text in enumerate(texts)]
    parts = split_into_parts(items, _render, limit, MARKER)
    assert parts
    assert all(utf8_len(p) <= limit for p in parts)
    n = len(parts)
    for number, part in enumerate(parts, 1):
        assert part.startswith(f"HEADER ({number}/{n})" if n > 1 else "HEADER")
    bodies = "\n".join(p.split("\n", 1)[1] if "\n" in p else "" for p in parts)
    for i in range(len(items)):
        assert bodies.count(f"§{i:03d}§") == 1
    # Items keep their order across parts.
    positions = [bodies.index(f"§{i:03d}§") for i in range(len(items))]
    assert positions == sorted(positions)
