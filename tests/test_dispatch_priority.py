"""The dispatcher gives way to webhooks in flight, and only to them (alertbridge.delivery.priority)."""

from __future__ import annotations

import asyncio

from alertbridge.delivery.priority import MAX_PAUSE, YIELD_FACTOR, WebhookLoad


async def test_no_pause_without_webhooks_in_flight() -> None:
    load = WebhookLoad()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await load.give_way(0.01)
    assert loop.time() - began < 0.005


async def test_a_pause_proportional_to_the_work_while_webhooks_are_in_flight() -> None:
    load = WebhookLoad()
    loop = asyncio.get_running_loop()
    with load.accepting():
        assert load.in_flight == 1
        began = loop.time()
        await load.give_way(0.004)
        paused = loop.time() - began
    assert load.in_flight == 0
    assert paused >= 0.004 * YIELD_FACTOR * 0.9


async def test_a_pause_is_bounded() -> None:
    load = WebhookLoad()
    loop = asyncio.get_running_loop()
    with load.accepting():
        began = loop.time()
        await load.give_way(10.0)
        assert loop.time() - began < MAX_PAUSE + 0.05


def test_the_count_survives_an_exception() -> None:
    load = WebhookLoad()
    try:
        with load.accepting():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert load.in_flight == 0
