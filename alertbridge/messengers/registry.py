"""The messengers, one place: builds the channel for a configured receiver
(maps ``channel = "app" | "robot" | "console"`` to a class) and lists each
messenger's ``check-config --online`` checks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TextIO

from alertbridge.config import ConsoleReceiver
from alertbridge.errors import ConfigError
from alertbridge.images import ImageFetcher
from alertbridge.messengers import Channel
from alertbridge.messengers.console import ConsoleChannel
from alertbridge.messengers.wecom.app import DUPLICATE_CHECK_INTERVAL, AppChannel
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppReceiver, RobotReceiver, WeComAppConfig
from alertbridge.messengers.wecom.online_check import wecom_checks
from alertbridge.messengers.wecom.robot import RobotChannel
from alertbridge.metrics import Metrics
from alertbridge.online_check import MessengerChecks

# ``check-config --online``: each messenger's checks, in the order they run.
ONLINE_CHECKS: tuple[MessengerChecks, ...] = (wecom_checks,)


def build_channel(
    receiver_name: str,
    receiver_config: AppReceiver | RobotReceiver | ConsoleReceiver,
    *,
    apps: Mapping[str, WeComAppConfig],
    client: WeComClient,
    out: TextIO,
    images: ImageFetcher | None = None,
    duplicate_check_interval: timedelta = DUPLICATE_CHECK_INTERVAL,
    metrics: Metrics | None = None,
) -> Channel:
    """The channel that delivers ``receiver_name``'s messages.

    ``images`` fetches the alert images app and robot channels post after a
    message (receivers with ``images = true``; console channels ignore them).
    ``duplicate_check_interval`` is ``delivery.duplicate_check_interval`` (app channels).
    ``metrics`` counts the images they post or skip.

    Raises:
        ConfigError: an app receiver names an app missing from ``apps`` (the
            config loader already rejects that; this guards other callers).
    """
    match receiver_config:
        case AppReceiver(app=app_name):
            if app_name not in apps:
                raise ConfigError(
                    "config",
                    [(f"receivers.{receiver_name}.app", f"no app {app_name!r} in [wecom.apps]")],
                )
            return AppChannel(
                client,
                app_name,
                apps[app_name],
                images=images,
                duplicate_check_interval=duplicate_check_interval,
                metrics=metrics,
            )
        case RobotReceiver(robot_key=key):
            return RobotChannel(client, key, images=images, metrics=metrics)
        case ConsoleReceiver():
            return ConsoleChannel(out, receiver_name)
    raise TypeError(f"unknown receiver type {type(receiver_config).__name__}")
