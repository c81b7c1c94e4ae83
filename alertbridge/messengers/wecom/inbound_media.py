"""Files members send to the app — a screenshot replied to an alert, a voice
note, a log file — kept in the audit trail.

WeCom holds an inbound file for 3 days under its ``MediaId`` (docs §3.1,
§7), so it is fetched at once (``media/get``, at most
``[wecom] inbound_media_max_bytes``) and stored beside a new audit row
(``StateStore.add_attachment``): action ``attach:<kind>``, the sender, and the
alert reference it most likely concerns — the one the member's most recent
command named, else the one last sent to them. ``alertbridge audit list``
shows the row; ``alertbridge audit attachment ID`` writes the file out.

A file that cannot be fetched (too large, expired, WeCom failing) is still
audited, with result ``failed`` and the reason, so nobody wonders where a
screenshot went; the member is told either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from alertbridge.errors import DeliveryError
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.inbound import MediaMessage
from alertbridge.stores.state import Attachment, AuditEntry, StateStore

log = logging.getLogger(__name__)

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "audio/amr": ".amr", "video/mp4": ".mp4"}


async def keep_inbound_media(
    message: MediaMessage,
    *,
    app_name: str,
    app: WeComAppConfig,
    client: WeComClient,
    state: StateStore,
    max_bytes: int,
    now: Callable[[], datetime],
    language: str,
) -> str:
    """Fetch and store ``message``'s file beside a new audit row; the reply for the member."""
    user = message.from_user
    ref = await state.latest_audit_ref(user)
    if ref is None:
        latest = await state.latest_ref_for_user(user)
        ref = latest.ref if latest is not None else None
    action = f"attach:{message.kind}"
    about = f" #{ref}" if ref is not None else ""
    if max_bytes == 0:
        await state.add_audit(AuditEntry(now(), user, action, ref, "refused", "inbound media is not kept"))
        return _t(language, "收到了，但本服务不保存文件。", "Received, but this service keeps no files.")
    try:
        download = await client.download_media(app_name, app, message.media_id, max_bytes)
    except DeliveryError as exc:
        log.warning(
            "inbound_media_not_fetched app=%s user=%s kind=%s reason=%s",
            app_name,
            user,
            message.kind,
            exc.reason,
        )
        await state.add_audit(AuditEntry(now(), user, action, ref, "failed", f"{exc.reason}: {exc}"[:500]))
        if exc.reason == "too_large":
            return _t(
                language,
                f"文件超过 {_size(max_bytes)}，未保存。",
                f"The file is over {_size(max_bytes)} and was not kept.",
            )
        return _t(
            language,
            "文件未能保存，请稍后再发一次。",
            "The file could not be kept; please send it again later.",
        )
    filename = (
        message.filename or download.filename or f"{message.kind}-{message.msg_id or message.create_time}"
    )
    if "." not in filename:
        filename += _EXTENSIONS.get(download.content_type, "")
    attachment = Attachment(
        kind=message.kind,
        filename=filename,
        content_type=download.content_type or "application/octet-stream",
        media_id=message.media_id,
        data=download.data,
    )
    detail = f"{filename} ({attachment.size} bytes)"
    audit_id = await state.add_attachment(AuditEntry(now(), user, action, ref, "ok", detail), attachment)
    log.info(
        "inbound_media_kept app=%s user=%s audit_id=%d ref=%s bytes=%d",
        app_name,
        user,
        audit_id,
        ref,
        attachment.size,
    )
    return _t(
        language,
        f"已保存{about}：{filename}（审计记录 {audit_id}）",
        f"Kept{about}: {filename} (audit entry {audit_id})",
    )


def _t(language: str, zh: str, en: str) -> str:
    return zh if language == "zh" else en


def _size(limit: int) -> str:
    mib = 1024 * 1024
    return f"{limit / mib:g} MB" if limit >= mib else f"{limit / 1024:g} KB"
