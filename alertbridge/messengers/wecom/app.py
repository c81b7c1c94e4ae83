"""The self-built app channel: ``message/send`` to users, departments and tags.

A message that carries image URLs (``RenderedMessage.images``) is followed by
one ``image`` message per image, to the same recipients: the image is fetched
(``ImageFetcher``), uploaded once per content (``media/upload``, its media_id
reused from ``WeComClient.media_cache`` for 2.5 days) and sent by media_id.
File URLs (``RenderedMessage.files``, a receiver's ``attach_files``) follow
as ``file`` messages the same way (``ImageFetcher.fetch_file``, WeCom's file
rules). Both are best effort: any failure is logged, counted in
``image_failures[reason]`` (``images_sent`` counts both) and skipped; the
message itself, already sent, carries the link.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from alertbridge.errors import DeliveryError, PermanentDeliveryError
from alertbridge.images import ImageError, ImageFetcher, record_image_failure
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Receipt
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errcodes import ErrCode
from alertbridge.messengers.wecom.errors import WeComAPIError
from alertbridge.messengers.wecom.media_rules import MediaFile, MediaKind, MediaRejected, check_media
from alertbridge.metrics import Metrics

log = logging.getLogger(__name__)

# WeCom drops a request whose JSON is identical to one it accepted within
# this interval (max 4 h). A retry after a timeout or a crash that WeCom had
# in fact delivered therefore does not reach the users twice; a later,
# genuine repeat of the same notification must, so the interval is short
# (``delivery.duplicate_check_interval``, default 60 s).
DUPLICATE_CHECK_INTERVAL = timedelta(seconds=60)


def build_app_body(
    message: RenderedMessage,
    recipients: Recipients,
    agent_id: int,
    duplicate_check_interval: timedelta = DUPLICATE_CHECK_INTERVAL,
) -> dict[str, object]:
    """The message/send JSON for one message; empty recipient kinds are left out."""
    body: dict[str, object] = {}
    for key, ids in (
        ("touser", recipients.to_user),
        ("toparty", recipients.to_party),
        ("totag", recipients.to_tag),
    ):
        if ids:
            body[key] = "|".join(ids)
    body.update(message_fields(message))
    body["agentid"] = agent_id
    body["enable_duplicate_check"] = 1
    body["duplicate_check_interval"] = max(1, int(duplicate_check_interval.total_seconds()))
    return body


def message_fields(message: RenderedMessage) -> dict[str, object]:
    """``msgtype`` and its section, as ``message/send`` and ``appchat/send`` both take them."""
    if message.card is not None:  # template_card, textcard, news: their section as built
        return {"msgtype": message.msgtype, message.msgtype: dict(message.card)}
    return {"msgtype": message.msgtype, message.msgtype: {"content": message.content}}


def build_app_media_body(
    kind: MediaKind, media_id: str, recipients: Recipients, agent_id: int
) -> dict[str, object]:
    """The message/send JSON of an ``image``/``voice``/``video``/``file`` message (docs §4.3).

    Without WeCom's duplicate check: an alert's images are never retried (a
    failure only skips them), and a re-notification showing the same panel
    again within the interval must not be silently dropped.
    """
    body: dict[str, object] = {}
    for key, ids in (
        ("touser", recipients.to_user),
        ("toparty", recipients.to_party),
        ("totag", recipients.to_tag),
    ):
        if ids:
            body[key] = "|".join(ids)
    body["msgtype"] = str(kind)
    body[str(kind)] = {"media_id": media_id}
    body["agentid"] = agent_id
    return body


class AppChannel:
    """Sends through one configured WeCom app."""

    kind = "app"

    def __init__(
        self,
        client: WeComClient,
        app_name: str,
        app_config: WeComAppConfig,
        *,
        images: ImageFetcher | None = None,
        duplicate_check_interval: timedelta = DUPLICATE_CHECK_INTERVAL,
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics if metrics is not None else Metrics()
        self.duplicate_check: timedelta | None = duplicate_check_interval
        self._app_name = app_name
        self._app = app_config
        self._images = images
        # Images not posted, by reason (ImageError reasons, upload_failed,
        # send_failed, internal); images_sent counts those that were.
        self.image_failures: Counter[str] = Counter()
        self.images_sent = 0

    def __repr__(self) -> str:
        return f"<AppChannel app={self._app_name!r} agent_id={self._app.agent_id}>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Raises ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see ``WeComClient``)."""
        if not (recipients.to_user or recipients.to_party or recipients.to_tag):
            # WeCom would answer 82001; say so without spending a request.
            raise PermanentDeliveryError(
                f"app {self._app_name!r}: message has no recipients", reason="no_recipients"
            )
        body = build_app_body(
            message, recipients, self._app.agent_id, self.duplicate_check or DUPLICATE_CHECK_INTERVAL
        )
        result = await self._client.send_app_message(self._app_name, self._app, body)
        await self._post_attachments(message, recipients)
        return Receipt(
            msgid=result.msgid or None, response_code=getattr(result, "response_code", None) or None
        )

    async def _post_attachments(self, message: RenderedMessage, recipients: Recipients) -> None:
        """The message's images, then its files, after it; never raises."""
        if message.images:
            await self._send_attachments(MediaKind.IMAGE, message.images, recipients)
        if message.files:
            await self._send_attachments(MediaKind.FILE, message.files, recipients)

    async def _send_attachments(self, kind: MediaKind, urls: Sequence[str], recipients: Recipients) -> None:
        """Post each image or file after the message; never raises (see the module docs)."""
        where = f"{self.kind}:{self._app_name}"
        if self._images is None:
            log.debug("images_not_configured channel=%s %ss=%d", where, kind, len(urls))
            return
        for url in urls:
            try:
                await self._send_attachment(self._images, kind, url, recipients)
            except ImageError as exc:
                record_image_failure(
                    self.image_failures, self._metrics, exc.reason, channel=where, url=url, detail=str(exc)
                )
            except MediaRejected as exc:
                record_image_failure(
                    self.image_failures, self._metrics, exc.refusal, channel=where, url=url, detail=exc.detail
                )
            except MediaSendError as exc:
                record_image_failure(
                    self.image_failures, self._metrics, exc.stage, channel=where, url=url, detail=exc.detail
                )
            except Exception as exc:  # the message is sent: an attachment bug must not re-send it
                log.exception("image_crashed channel=%s", where)
                record_image_failure(
                    self.image_failures,
                    self._metrics,
                    "internal",
                    channel=where,
                    url=url,
                    detail=type(exc).__name__,
                )
            else:
                self.images_sent += 1
                self._metrics.images.labels(self.kind, "sent").inc()

    async def _send_attachment(
        self, fetcher: ImageFetcher, kind: MediaKind, url: str, recipients: Recipients
    ) -> None:
        if kind is MediaKind.IMAGE:
            image = await fetcher.fetch(url)
            media = check_media(kind, image.data, f"alert.{image.extension}")
        else:
            fetched = await fetcher.fetch_file(url)
            media = check_media(kind, fetched.data, file_name_of(url))
        await self._send_media_staged(media, recipients)

    async def send_media(self, media: MediaFile, recipients: Recipients) -> None:
        """Send ``media`` as an ``image``/``voice``/``video``/``file`` message.

        Uploaded once per content and type (the id reused from
        ``WeComClient.media_cache``); a cached id WeCom has forgotten early
        (40007) is uploaded again, once.

        Raises:
            DeliveryError: the upload or the send failed (see ``WeComClient``).
        """
        try:
            await self._send_media_staged(media, recipients)
        except MediaSendError as exc:
            raise exc.cause from None

    async def _send_media_staged(self, media: MediaFile, recipients: Recipients) -> None:
        """``send_media``, its failure wrapped in a ``MediaSendError`` naming the stage."""
        cache = self._client.media_cache
        corp_id = self._app.corp_id
        media_id = cache.get(corp_id, media.kind, media.sha256)
        fresh = media_id is None
        if media_id is None:
            media_id = await self._upload(media)
        try:
            await self._send_media(media.kind, media_id, recipients)
        except MediaSendError as exc:
            if fresh or exc.errcode != ErrCode.INVALID_MEDIA_ID:
                raise
            cache.forget(corp_id, media.kind, media.sha256, media_id)
            await self._send_media(media.kind, await self._upload(media), recipients)

    async def _upload(self, media: MediaFile) -> str:
        failure: MediaSendError | None = None
        try:
            media_id = await self._client.upload_media(self._app_name, self._app, media)
        except DeliveryError as exc:
            failure = MediaSendError("upload_failed", exc)
        if failure is not None:
            raise failure
        self._client.media_cache.put(self._app.corp_id, media.kind, media.sha256, media_id)
        return media_id

    async def _send_media(self, kind: MediaKind, media_id: str, recipients: Recipients) -> None:
        failure: MediaSendError | None = None
        try:
            await self._post_media(kind, media_id, recipients)
        except DeliveryError as exc:
            failure = MediaSendError("send_failed", exc)
        if failure is not None:
            raise failure  # outside the except block: see WeComTransport.request

    async def _post_media(self, kind: MediaKind, media_id: str, recipients: Recipients) -> None:
        """Send one uploaded media id as its own message (``AppChatChannel``: into its chat)."""
        body = build_app_media_body(kind, media_id, recipients, self._app.agent_id)
        await self._client.send_app_message(self._app_name, self._app, body)


class MediaSendError(Exception):
    """A WeCom failure while posting media: ``stage`` (``upload_failed`` or
    ``send_failed``) is the image counter's reason, ``cause`` WeCom's error."""

    def __init__(self, stage: str, cause: DeliveryError) -> None:
        super().__init__(stage)
        self.stage = stage
        self.cause = cause
        self.detail = f"{cause.reason}: {cause}"
        self.errcode = cause.errcode if isinstance(cause, WeComAPIError) else None


def file_name_of(url: str) -> str:
    """The name WeCom shows for a file fetched from ``url``: its path's last part."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name or "attachment"
