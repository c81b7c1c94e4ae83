"""WeCom's rules for temporary media, checked before anything is uploaded.

``media/upload`` (docs/wecom-api.md §7) takes four types: ``image`` (JPG or
PNG, at most 10 MB), ``voice`` (AMR, at most 2 MB and 60 s), ``video`` (MP4,
at most 10 MB) and ``file`` (at most 20 MB); every file must be larger than
5 bytes. The robot's ``webhook/upload_media`` (§5) takes ``file`` and
``voice`` with the same limits. Checking here turns what WeCom would refuse
(40004, 40005, 40006, 40009, 40011, 44001) into one typed ``MediaRejected``
that names the rule, before a request — or a stored row — is spent on it.

The type is judged from the bytes, never from the file name: PNG and JPEG
by their signatures, AMR by its ``#!AMR`` header, MP4 by its leading
``ftyp`` box. A voice message's length is estimated by walking its AMR
frames (20 ms each), since WeCom refuses voices over 60 seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

from alertbridge.errors import AlertbridgeError

MiB = 1024 * 1024
MIN_BYTES = 6  # "every file > 5 bytes"
MAX_VOICE_SECONDS = 60.0


class MediaKind(StrEnum):
    """The ``type`` of ``media/upload`` (and the msgtype that sends the media id)."""

    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    FILE = "file"


class MediaRefusal(StrEnum):
    """Why a file is not uploaded: each names the rule it breaks."""

    EMPTY = "empty"  # no bytes at all (WeCom: 44001)
    TOO_SMALL = "too_small"  # 5 bytes or fewer (40006)
    TOO_LARGE = "too_large"  # over the type's byte limit (40006 / 40009 / 40011)
    BAD_TYPE = "bad_type"  # the bytes are not what the type needs (40004 / 40005)
    TOO_LONG = "too_long"  # a voice over 60 seconds


@dataclass(frozen=True, slots=True)
class MediaRule:
    max_bytes: int
    extensions: tuple[str, ...]  # what the file name should end with; () = any


MEDIA_RULES: dict[MediaKind, MediaRule] = {
    MediaKind.IMAGE: MediaRule(10 * MiB, (".png", ".jpg", ".jpeg")),
    MediaKind.VOICE: MediaRule(2 * MiB, (".amr",)),
    MediaKind.VIDEO: MediaRule(10 * MiB, (".mp4",)),
    MediaKind.FILE: MediaRule(20 * MiB, ()),
}

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_AMR_NB = b"#!AMR\n"
_AMR_WB = b"#!AMR-WB\n"
_AMR_FRAME_SECONDS = 0.02
# Bytes of one stored AMR frame, its header byte included, by frame type
# (RFC 4867 §5.3 storage format; types 9-15 carry no speech).
_AMR_NB_FRAME = (13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1)
_AMR_WB_FRAME = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1)


class MediaRejected(AlertbridgeError):
    """A file breaks one of WeCom's media rules; ``refusal`` says which."""

    def __init__(self, kind: MediaKind, refusal: MediaRefusal, detail: str) -> None:
        self.kind = kind
        self.refusal = refusal
        self.detail = detail
        super().__init__(f"{kind} refused ({refusal}): {detail}")


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A file that passed its type's rules, ready for ``media/upload``.

    ``filename`` is what WeCom shows (a file's name; images, voices and
    videos get the extension their bytes call for); ``sha256`` keys the
    media-id cache.
    """

    kind: MediaKind
    data: bytes
    filename: str
    content_type: str
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def check_media(kind: MediaKind, data: bytes, filename: str) -> MediaFile:
    """``data`` as a ``MediaFile`` of ``kind``, or ``MediaRejected`` naming the broken rule."""
    check_size(kind, len(data), filename)
    rule = MEDIA_RULES[kind]
    content_type, extension = _sniff(kind, data, filename)
    if kind is MediaKind.VOICE:
        seconds = amr_duration(data)
        if seconds > MAX_VOICE_SECONDS:
            raise MediaRejected(
                kind, MediaRefusal.TOO_LONG, f"{filename!r} lasts about {seconds:.0f} s; at most 60 s"
            )
    name = PurePath(filename).name or f"media{extension}"
    if extension and not name.lower().endswith(rule.extensions):
        name = f"{PurePath(name).stem or 'media'}{extension}"
    return MediaFile(kind, data, name, content_type, hashlib.sha256(data).hexdigest())


def check_size(kind: MediaKind, size: int, filename: str) -> None:
    """The size rules alone, for a file not read yet (``MediaRejected`` when broken)."""
    rule = MEDIA_RULES[kind]
    if size == 0:
        raise MediaRejected(kind, MediaRefusal.EMPTY, f"{filename!r} is empty")
    if size < MIN_BYTES:
        raise MediaRejected(
            kind, MediaRefusal.TOO_SMALL, f"{filename!r} has {size} bytes; WeCom needs more than 5"
        )
    if size > rule.max_bytes:
        raise MediaRejected(
            kind,
            MediaRefusal.TOO_LARGE,
            f"{filename!r} has {size} bytes; a {kind} may have at most {rule.max_bytes} ({rule.max_bytes // MiB} MB)",
        )


def _sniff(kind: MediaKind, data: bytes, filename: str) -> tuple[str, str]:
    """(content type, extension) the bytes show for ``kind``; files take any bytes."""
    if kind is MediaKind.IMAGE:
        if data.startswith(_PNG):
            return "image/png", ".png"
        if data.startswith(_JPEG):
            return "image/jpeg", ".jpg"
        raise MediaRejected(kind, MediaRefusal.BAD_TYPE, f"{filename!r} is neither PNG nor JPEG")
    if kind is MediaKind.VOICE:
        if data.startswith(b"#!AMR"):
            return "audio/amr", ".amr"
        raise MediaRejected(kind, MediaRefusal.BAD_TYPE, f"{filename!r} is not AMR (no #!AMR header)")
    if kind is MediaKind.VIDEO:
        if data[4:8] == b"ftyp":
            return "video/mp4", ".mp4"
        raise MediaRejected(kind, MediaRefusal.BAD_TYPE, f"{filename!r} is not MP4 (no ftyp box)")
    return "application/octet-stream", ""


def amr_duration(data: bytes) -> float:
    """Seconds of speech in an AMR (narrow- or wide-band) file: its frames × 20 ms.

    A truncated last frame is not counted; bytes after the header that are
    not AMR frames end the count (WeCom would refuse such a file anyway).
    """
    if data.startswith(_AMR_WB):
        position, sizes = len(_AMR_WB), _AMR_WB_FRAME
    elif data.startswith(_AMR_NB):
        position, sizes = len(_AMR_NB), _AMR_NB_FRAME
    else:
        return 0.0
    frames = 0
    while position < len(data):
        size = sizes[(data[position] >> 3) & 0x0F]
        if position + size > len(data):
            break
        position += size
        frames += 1
    return frames * _AMR_FRAME_SECONDS
