"""The group robot channel (群机器人 / 消息推送): ``webhook/send?key=``.

The key is the robot's only credential and names its group chat, so a robot
message has no recipients of its own.
"""

from __future__ import annotations

from pydantic import SecretStr

from alertbridge.channels import Receipt
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.wecom.client import WeComClient


def build_robot_body(message: RenderedMessage) -> dict[str, object]:
    return {"msgtype": message.msgtype, message.msgtype: {"content": message.content}}


class RobotChannel:
    kind = "robot"

    def __init__(self, client: WeComClient, key: SecretStr) -> None:
        self._client = client
        self._key = key

    def __repr__(self) -> str:
        return "<RobotChannel key=**********>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Raises ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see ``WeComClient``)."""
        del recipients  # the key decides the group chat
        await self._client.send_robot_message(self._key.get_secret_value(), build_robot_body(message))
        return Receipt()
