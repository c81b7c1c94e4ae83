"""The WeCom client's media calls: temporary uploads for apps (``media/upload``)
and robots (``webhook/upload_media``), and fetching what members sent
(``media/get``). A mixin of ``WeComClient``, which brings the transport and
the per-app access tokens (API reference: docs/wecom-api.md §5, §7).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from alertbridge.errors import PermanentDeliveryError
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errcodes import ErrCode
from alertbridge.messengers.wecom.errors import WeComTransportError, api_error
from alertbridge.messengers.wecom.media_rules import MediaFile, MediaKind
from alertbridge.messengers.wecom.transport import Answer, Download, WeComTransport

MEDIA_UPLOAD = "/cgi-bin/media/upload"
ROBOT_UPLOAD_MEDIA = "/cgi-bin/webhook/upload_media"
MEDIA_GET = "/cgi-bin/media/get"
# What a robot can send by media id (docs §5); images go inline as base64.
ROBOT_MEDIA_KINDS = frozenset({MediaKind.FILE, MediaKind.VOICE})


class WeComMediaCalls:
    """Media uploads and downloads; ``WeComClient`` provides what is declared here."""

    _transport: WeComTransport

    if TYPE_CHECKING:

        async def _with_token(
            self,
            app_name: str,
            app: WeComAppConfig,
            endpoint: str,
            call: Callable[[str], Awaitable[Answer]],
        ) -> Answer: ...

    async def upload_media(self, app_name: str, app: WeComAppConfig, media: MediaFile) -> str:
        """Upload a temporary file (``media/upload?type=<kind>``, docs §7); returns its media_id.

        ``media`` passed ``check_media``, so WeCom's type and size rules hold.
        The file goes as the multipart part ``media`` with its ``filename``
        (the name WeCom shows; for images WeCom also judges the type by its
        extension). The id is valid for 3 days (see ``media_cache``) for every
        app of the corp. Token errors are replayed once, as for ``send_app_message``.

        Raises:
            PermanentWeComAPIError: 40004/40005 (bad type), 40006/40009/40011 (bad
                size), 44001 (empty) and every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure,
                or an answer without a media_id (``bad_response``).
        """
        files = {"media": (media.filename, media.data, media.content_type)}

        async def call(token: str) -> Answer:
            return await self._transport.request(
                "POST",
                MEDIA_UPLOAD,
                {"access_token": token, "type": str(media.kind)},
                None,
                files=files,
                secrets=(token,),
            )

        return _media_id(await self._with_token(app_name, app, MEDIA_UPLOAD, call), MEDIA_UPLOAD)

    async def upload_robot_media(self, key: str, media: MediaFile) -> str:
        """Upload a file or voice for one robot (``webhook/upload_media``, docs §5); returns its media_id.

        The id is valid for 3 days and usable by this robot only.

        Raises:
            PermanentDeliveryError: a ``media`` that is neither file nor voice
                (``media_refused``), and every permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        if media.kind not in ROBOT_MEDIA_KINDS:
            raise PermanentDeliveryError(f"a robot cannot send a {media.kind}", reason="media_refused")
        answer = await self._transport.request(
            "POST",
            ROBOT_UPLOAD_MEDIA,
            {"key": key, "type": str(media.kind)},
            None,
            files={"media": (media.filename, media.data, media.content_type)},
            secrets=(key,),
        )
        if answer.errcode != ErrCode.OK:
            raise api_error(answer.errcode, answer.errmsg, ROBOT_UPLOAD_MEDIA)
        return _media_id(answer, ROBOT_UPLOAD_MEDIA)

    async def download_media(
        self, app_name: str, app: WeComAppConfig, media_id: str, max_bytes: int
    ) -> Download:
        """Fetch media a member sent to the app (``media/get``, docs §7), at most ``max_bytes``.

        Raises:
            PermanentWeComAPIError: 40007 (unknown or expired media id) and
                every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure;
                ``too_large`` when the file exceeds ``max_bytes``.
        """
        got: list[Download] = []

        async def call(token: str) -> Answer:
            params = {"access_token": token, "media_id": media_id}
            result = await self._transport.download(MEDIA_GET, params, secrets=(token,), max_bytes=max_bytes)
            if isinstance(result, Download):
                got.append(result)
                return Answer(ErrCode.OK, "ok", {})
            return result

        await self._with_token(app_name, app, MEDIA_GET, call)
        return got[-1]


def _media_id(answer: Answer, endpoint: str) -> str:
    media_id = answer.data.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise WeComTransportError(endpoint, "answer lacks media_id", reason="bad_response")
    return media_id
