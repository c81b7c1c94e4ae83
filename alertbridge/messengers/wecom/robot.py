"""The group robot channel (群机器人 / 消息推送): ``webhook/send?key=``.

The key is the robot's only credential and names its group chat, so a robot
message has no recipients of its own; it may @mention people
(``Recipients.mention_*``, from ``alertbridge.messengers.wecom.mentions``).

Mentions ping people, so a group split into several messages mentions them
once, on its last part:

- text: ``mentioned_list`` (userids, plus ``"@all"``) and
  ``mentioned_mobile_list`` on the body;
- markdown: ``<@userid>`` inside the content, which the renderer adds (the
  dispatcher passes ``mentions=``) so it counts toward the 4096-byte limit.
  Markdown has no syntax for mobiles or @all, so those are not sent there.

A message that carries image URLs (``RenderedMessage.images``) is followed by
one ``image`` message per image: the fetched bytes as base64 with their MD5
(docs §5; at most 2 MB raw, larger ones are skipped). Images are best effort:
any failure is logged, counted in ``image_failures[reason]`` and skipped; the
message itself, already sent, carries the link. File URLs
(``RenderedMessage.files``, a receiver's ``attach_files``) follow as
``file`` messages the same way, uploaded with the robot's
``webhook/upload_media`` (``send_media``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from pydantic import SecretStr

from alertbridge.errors import DeliveryError, PermanentDeliveryError
from alertbridge.images import FetchedImage, ImageError, ImageFetcher, record_image_failure
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Receipt
from alertbridge.messengers.wecom.app import file_name_of
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.errcodes import ErrCode
from alertbridge.messengers.wecom.errors import WeComAPIError
from alertbridge.messengers.wecom.media import robot_scope
from alertbridge.messengers.wecom.media_rules import MediaFile, MediaKind, MediaRejected, check_media
from alertbridge.metrics import Metrics

log = logging.getLogger(__name__)

# A robot image message carries at most this many raw bytes (docs §5).
ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024


def build_robot_body(message: RenderedMessage, recipients: Recipients | None = None) -> dict[str, object]:
    """The webhook/send JSON; text messages carry the @mentions on the group's last part.
    news and template_card messages carry their section as built (no mentions: they have none)."""
    if message.card is not None:
        return {"msgtype": message.msgtype, message.msgtype: dict(message.card)}
    section: dict[str, object] = {"content": message.content}
    if message.msgtype == "text" and recipients is not None and message.part == message.parts:
        users = list(recipients.mention_users)
        if recipients.mention_all and "@all" not in users:
            users.append("@all")
        if users:
            section["mentioned_list"] = users
        if recipients.mention_mobiles:
            section["mentioned_mobile_list"] = list(recipients.mention_mobiles)
    return {"msgtype": message.msgtype, message.msgtype: section}


def build_robot_image_body(data: bytes) -> dict[str, object]:
    """An ``image`` message: the raw bytes as base64 and the MD5 of the raw bytes."""
    return {
        "msgtype": "image",
        "image": {
            "base64": base64.b64encode(data).decode("ascii"),
            # WeCom's integrity check, not a security use.
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        },
    }


class RobotChannel:
    kind = "robot"
    duplicate_check = None  # robots have no duplicate check

    def __init__(
        self,
        client: WeComClient,
        key: SecretStr,
        *,
        images: ImageFetcher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics if metrics is not None else Metrics()
        self._key = key
        self._images = images
        # Images not posted, by reason (ImageError reasons, send_failed,
        # internal); images_sent counts those that were.
        self.image_failures: Counter[str] = Counter()
        self.images_sent = 0

    def __repr__(self) -> str:
        return "<RobotChannel key=**********>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Raises ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see ``WeComClient``)."""
        # The key decides the group chat; recipients only say whom to @mention.
        body = build_robot_body(message, recipients)
        await self._client.send_robot_message(self._key.get_secret_value(), body)
        if message.images:
            await self._send_attachments(message.images, self._post_image)
        if message.files:
            await self._send_attachments(message.files, self._post_file)
        return Receipt()

    async def _send_attachments(
        self, urls: Sequence[str], post: Callable[[ImageFetcher, str], Awaitable[tuple[str, str] | None]]
    ) -> None:
        """Post each image or file after the message; never raises (see the module docs).
        ``post`` sends one URL's content and answers the (reason, detail) it was skipped for."""
        if self._images is None:
            log.debug("images_not_configured channel=robot attachments=%d", len(urls))
            return
        for url in urls:
            try:
                reason = await post(self._images, url)
            except ImageError as exc:
                record_image_failure(
                    self.image_failures, self._metrics, exc.reason, channel="robot", url=url, detail=str(exc)
                )
                continue
            except Exception as exc:  # the message is sent: an attachment bug must not re-send it
                log.exception("image_crashed channel=robot")
                record_image_failure(
                    self.image_failures,
                    self._metrics,
                    "internal",
                    channel="robot",
                    url=url,
                    detail=type(exc).__name__,
                )
                continue
            if reason is None:
                self.images_sent += 1
                self._metrics.images.labels(self.kind, "sent").inc()
            else:
                record_image_failure(
                    self.image_failures, self._metrics, reason[0], channel="robot", url=url, detail=reason[1]
                )

    async def _post_image(self, fetcher: ImageFetcher, url: str) -> tuple[str, str] | None:
        return await self._send_image(await fetcher.fetch(url))

    async def _post_file(self, fetcher: ImageFetcher, url: str) -> tuple[str, str] | None:
        """One ``attach_files`` file, uploaded with the robot's ``webhook/upload_media`` (``send_media``)."""
        fetched = await fetcher.fetch_file(url)
        try:
            await self.send_media(check_media(MediaKind.FILE, fetched.data, file_name_of(url)))
        except MediaRejected as exc:
            return exc.refusal, exc.detail
        except DeliveryError as exc:
            # The client's errors never carry the key.
            return "send_failed", f"{exc.reason}: {exc}"
        return None

    async def _send_image(self, image: FetchedImage) -> tuple[str, str] | None:
        """Send one image; the (reason, detail) it was skipped for, or None when sent."""
        if image.size > ROBOT_IMAGE_LIMIT:
            return "too_large", f"{image.size} bytes; a robot image may have {ROBOT_IMAGE_LIMIT}"
        try:
            await self._client.send_robot_message(
                self._key.get_secret_value(), build_robot_image_body(image.data)
            )
        except DeliveryError as exc:
            # The client's errors never carry the key.
            return "send_failed", f"{exc.reason}: {exc}"
        return None

    async def send_media(self, media: MediaFile) -> None:
        """Send ``media`` to the robot's group: an image inline (base64, at most
        2 MB), a file or voice by a media id from ``webhook/upload_media``,
        uploaded once per content (one WeCom forgot early, 40007, again; ids are the robot's own, kept in
        ``WeComClient.media_cache`` under ``robot_scope``).

        Raises:
            PermanentDeliveryError: a video (robots cannot send one), an image
                over 2 MB (``media_refused``), and every permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        key = self._key.get_secret_value()
        if media.kind is MediaKind.IMAGE:
            if media.size > ROBOT_IMAGE_LIMIT:
                raise PermanentDeliveryError(
                    f"{media.size} bytes; a robot image may have {ROBOT_IMAGE_LIMIT}", reason="media_refused"
                )
            await self._client.send_robot_message(key, build_robot_image_body(media.data))
            return
        cache, scope = self._client.media_cache, robot_scope(key)
        media_id = cache.get(scope, media.kind, media.sha256)
        if media_id is not None:
            try:
                await self._client.send_robot_message(key, _media_body(media, media_id))
                return
            except WeComAPIError as exc:
                # WeCom forgot the cached id early (40007): upload again, once.
                if exc.errcode != ErrCode.INVALID_MEDIA_ID:
                    raise
                cache.forget(scope, media.kind, media.sha256, media_id)
        media_id = await self._client.upload_robot_media(key, media)
        cache.put(scope, media.kind, media.sha256, media_id)
        await self._client.send_robot_message(key, _media_body(media, media_id))


def _media_body(media: MediaFile, media_id: str) -> dict[str, object]:
    """A ``file`` or ``voice`` message naming an uploaded media id (docs §5)."""
    return {"msgtype": str(media.kind), str(media.kind): {"media_id": media_id}}
