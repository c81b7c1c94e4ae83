"""The self-built app channel: ``message/send`` to users, departments and tags."""

from __future__ import annotations

from alertbridge.channels import Receipt
from alertbridge.config import WeComAppConfig
from alertbridge.errors import PermanentDeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.wecom.client import WeComClient

# WeCom drops a request whose JSON is identical to one it accepted within
# this many seconds (its default; max 4 h). A retry after a timeout that WeCom
# had in fact delivered therefore does not reach the users twice.
DUPLICATE_CHECK_INTERVAL = 1800


def build_app_body(message: RenderedMessage, recipients: Recipients, agent_id: int) -> dict[str, object]:
    """The message/send JSON for one message; empty recipient kinds are left out."""
    body: dict[str, object] = {}
    for key, ids in (
        ("touser", recipients.to_user),
        ("toparty", recipients.to_party),
        ("totag", recipients.to_tag),
    ):
        if ids:
            body[key] = "|".join(ids)
    body["msgtype"] = message.msgtype
    if message.card is not None:
        body["template_card"] = dict(message.card)
    else:
        body[message.msgtype] = {"content": message.content}
    body["agentid"] = agent_id
    body["enable_duplicate_check"] = 1
    body["duplicate_check_interval"] = DUPLICATE_CHECK_INTERVAL
    return body


class AppChannel:
    """Sends through one configured WeCom app."""

    kind = "app"

    def __init__(self, client: WeComClient, app_name: str, app_config: WeComAppConfig) -> None:
        self._client = client
        self._app_name = app_name
        self._app = app_config

    def __repr__(self) -> str:
        return f"<AppChannel app={self._app_name!r} agent_id={self._app.agent_id}>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Raises ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see ``WeComClient``)."""
        if not (recipients.to_user or recipients.to_party or recipients.to_tag):
            # WeCom would answer 82001; say so without spending a request.
            raise PermanentDeliveryError(
                f"app {self._app_name!r}: message has no recipients", reason="no_recipients"
            )
        body = build_app_body(message, recipients, self._app.agent_id)
        result = await self._client.send_app_message(self._app_name, self._app, body)
        return Receipt(
            msgid=result.msgid or None, response_code=getattr(result, "response_code", None) or None
        )
