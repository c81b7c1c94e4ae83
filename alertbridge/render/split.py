"""Fitting rendered alerts into WeCom's byte limits.

WeCom counts UTF-8 bytes and rejects (robot markdown: 40058) or silently
cuts (text) anything longer, so nothing here may ever return content over the
limit. The strategy, in order of preference:

1. the whole group in one message;
2. several complete messages split **between** alerts, each re-rendered by
   the template with its own subset (so every part has a title), numbered
   ``(1/3)``, ``(2/3)`` …;
3. an alert too big for a message of its own is cut at a character boundary
   with a visible marker — the cut keeps the beginning, so the alert's
   identifying line survives.

The functions are pure: rendering is passed in as a callback, which keeps the
packing logic testable without Jinja.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# (items of this part, part number, part count) -> message content
RenderPart = Callable[[Sequence[T], int, int], str]


def utf8_len(text: str) -> int:
    """Bytes WeCom counts for ``text``."""
    return len(text.encode("utf-8"))


def truncate_utf8(text: str, max_bytes: int, marker: str) -> str:
    """``text`` if it fits in ``max_bytes``, else its longest prefix + ``marker`` that does.

    The cut is made on a character boundary (never inside a multi-byte
    sequence). If even ``marker`` does not fit, the text is cut without it:
    staying under the limit matters more than saying so.
    """
    if max_bytes <= 0:
        return ""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    marker_len = utf8_len(marker)
    if marker_len > max_bytes:
        marker, marker_len = "", 0
    # A prefix of valid UTF-8 cut anywhere is valid except for at most one
    # incomplete trailing sequence; "ignore" drops exactly that.
    head = data[: max_bytes - marker_len].decode("utf-8", "ignore")
    return head + marker


def split_into_parts(items: Sequence[T], render: RenderPart[T], limit: int, marker: str) -> list[str]:
    """Render ``items`` into as few messages as fit ``limit`` bytes each.

    Every item lands in exactly one part, in order. The result always has at
    least one message and every message is at most ``limit`` bytes.
    """
    return [text for _, text in split_with_items(items, render, limit, marker)]


def split_with_items(
    items: Sequence[T], render: RenderPart[T], limit: int, marker: str
) -> list[tuple[Sequence[T], str]]:
    """``split_into_parts``, each part with the items it holds (digests need to
    know which deliveries a part finished)."""
    whole = render(items, 1, 1)
    if utf8_len(whole) <= limit or len(items) <= 1:
        return [(items, truncate_utf8(whole, limit, marker))]
    chunks = _pack(items, render, limit)
    while True:
        count = len(chunks)
        rendered = [render(chunk, number, count) for number, chunk in enumerate(chunks, 1)]
        overflowing = {
            i
            for i, (chunk, text) in enumerate(zip(chunks, rendered, strict=True))
            if len(chunk) > 1 and utf8_len(text) > limit
        }
        if not overflowing:
            return [
                (chunk, truncate_utf8(text, limit, marker))
                for chunk, text in zip(chunks, rendered, strict=True)
            ]
        # Only a template whose size is not monotonic in the part marker (or
        # that renders a part differently once it is not the whole group) gets
        # here. Give each offending item its own part rather than cutting one
        # off; every round adds parts, so this ends by len(items) parts.
        chunks = [
            single
            for i, chunk in enumerate(chunks)
            for single in ([[item] for item in chunk] if i in overflowing else [chunk])
        ]


def _pack(items: Sequence[T], render: RenderPart[T], limit: int) -> list[Sequence[T]]:
    """Greedy packing, in order, with room reserved for the widest part marker.

    Each part takes as many of the next items as fit. The final part count is
    unknown while packing, but it cannot exceed the number of items, so parts
    are measured as ``(k/len(items))`` — at least as wide as the real
    ``(k/n)``. The part number itself is known exactly.

    Parts tend to hold similar numbers of items, so the search for each
    part's size starts from the previous one: about two renders per part
    instead of one per item added.
    """
    widest = len(items)
    chunks: list[Sequence[T]] = []
    start, guess = 0, 1
    while start < len(items):
        fits = _fits_from(items, start, len(chunks) + 1, widest, render, limit)
        count = _largest_fitting(fits, guess, len(items) - start)
        chunks.append(items[start : start + count])
        start, guess = start + count, count
    return chunks


def _fits_from(
    items: Sequence[T], start: int, part: int, parts: int, render: RenderPart[T], limit: int
) -> Callable[[int], bool]:
    """Does part ``part`` fit holding ``count`` items from ``start``? Each count renders once."""
    measured: dict[int, bool] = {}

    def fits(count: int) -> bool:
        if count not in measured:
            measured[count] = utf8_len(render(items[start : start + count], part, parts)) <= limit
        return measured[count]

    return fits


def _largest_fitting(fits: Callable[[int], bool], guess: int, most: int) -> int:
    """The largest ``k`` in ``1..most`` with ``fits(k)``; 1 if none (too big alone: truncated).

    Gallops from ``guess`` (up while it fits, down while it does not), then
    bisects. Assumes that fitting is monotonic in ``k``; a template for which
    it is not is caught by the final check in ``split_into_parts``.
    """
    guess = max(1, min(guess, most))
    step = 1
    if fits(guess):
        low, high = guess, most + 1  # fits(low); high is past anything that fits
        while low < most:
            probe = min(low + step, most)
            if not fits(probe):
                high = probe
                break
            low, step = probe, step * 2
    else:
        low, high = 0, guess  # fits(0) is vacuously true
        while high - step >= 1:
            probe = high - step
            if fits(probe):
                low = probe
                break
            high, step = probe, step * 2
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return max(low, 1)
