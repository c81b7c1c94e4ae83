"""The one place tests wire the delivery core: tracker, channels, dispatcher.

Tests that drive the dispatcher in process (instead of through a running
``alertbridge serve``) build it here, so when a constructor of
``alertbridge.delivery`` changes, this file changes and the tests do not.
The wiring is the same the app does, with the two things tests pin down:
a deterministic jitter (``rand`` always 1.0) and the caller's clock.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import datetime

from alertbridge.config import Config
from alertbridge.delivery import Dispatcher, GroupTracker, SendBudget
from alertbridge.messengers import Channel
from alertbridge.messengers.registry import MessengerDeps, build_channels, build_messengers
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.metrics import Metrics
from alertbridge.render import Renderer
from alertbridge.silencers import Silencer
from alertbridge.stores import OutboxStore, StateStore

# A WeCom base URL nothing listens on: for trackers whose test never reaches WeCom.
UNREACHABLE_WECOM = "http://127.0.0.1:9"


def group_tracker(
    config: Config,
    state: StateStore,
    client: WeComClient,
    silencers: Mapping[str, Silencer] | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> GroupTracker:
    """The tracker of ``config``'s groups on ``state``, updating cards through
    ``client``; on the wall clock unless given the test's ``clock``."""
    deps = MessengerDeps(config=config, client=client, out=io.StringIO())
    messengers = build_messengers(deps, state)
    if clock is None:
        return GroupTracker(config=config, state=state, silencers=silencers or {}, messengers=messengers)
    return GroupTracker(
        config=config, state=state, silencers=silencers or {}, messengers=messengers, clock=clock
    )


def receiver_channels(config: Config, client: WeComClient) -> dict[str, Channel]:
    """Every receiver's channel as the app builds it, WeCom through ``client``.

    Console receivers print into a throwaway buffer: tests of this wiring
    look at what WeCom received.
    """
    return build_channels(MessengerDeps(config=config, client=client, out=io.StringIO()))


def dispatcher(
    config: Config,
    store: OutboxStore,
    channels: Mapping[str, Channel],
    tracker: GroupTracker,
    *,
    clock: Callable[[], datetime],
    budget: SendBudget | None = None,
    metrics: Metrics | None = None,
) -> Dispatcher:
    """The dispatcher of ``config`` over ``store``, with no retry jitter."""
    return Dispatcher(
        config=config,
        store=store,
        channels=channels,
        renderer=Renderer(timezone=config.server.tz),
        tracker=tracker,
        budget=budget,
        metrics=metrics,
        clock=clock,
        rand=lambda: 1.0,
    )
