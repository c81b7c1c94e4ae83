"""What the fake WeCom enforces, as numbers and names: endpoints, the default
app and robot, content and rate limits, media limits, card and message types.

Kept apart from the code that enforces them so tests and sibling fakes can
name a limit without reaching into a handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable

GETTOKEN = "gettoken"
MESSAGE_SEND = "message/send"
UPDATE_TEMPLATE_CARD = "message/update_template_card"
WEBHOOK_SEND = "webhook/send"
MEDIA_UPLOAD = "media/upload"
AGENT_GET = "agent/get"
USER_GET = "user/get"
TAG_GET = "tag/get"
# Served by modules of their own (fake_recall, fake_appchat), registered in FakeWeCom.__init__.
MESSAGE_RECALL = "message/recall"
APPCHAT_CREATE = "appchat/create"
APPCHAT_GET = "appchat/get"
APPCHAT_SEND = "appchat/send"
ENDPOINTS = (
    GETTOKEN,
    MESSAGE_SEND,
    UPDATE_TEMPLATE_CARD,
    WEBHOOK_SEND,
    MEDIA_UPLOAD,
    AGENT_GET,
    USER_GET,
    TAG_GET,
    MESSAGE_RECALL,
    APPCHAT_CREATE,
    APPCHAT_GET,
    APPCHAT_SEND,
)

DEFAULT_CORP_ID = "ww0000fakecorp"
DEFAULT_SECRET = "fake-app-secret-0123456789"
DEFAULT_AGENT_ID = 1000002
DEFAULT_ROBOT_KEY = "fake-robot-key-0123456789"

APP_CONTENT_LIMIT = 2048
ROBOT_TEXT_LIMIT = 2048
ROBOT_MARKDOWN_LIMIT = 4096
MEMBER_PER_MINUTE = 30
MEMBER_PER_HOUR = 1000
ROBOT_PER_MINUTE = 20
DEFAULT_DUPLICATE_INTERVAL = 1800
MAX_DUPLICATE_INTERVAL = 4 * 3600
# The send-answer field description says 24 h, the 2025 update page 72 h
# (docs §4.4): the fake holds to the stricter one.
RESPONSE_CODE_LIFETIME = 24 * 3600
MEDIA_LIFETIME = 3 * 24 * 3600
MEDIA_MIN_BYTES = 6  # "every file > 5 bytes"
# media/upload limits per type: (bytes, errcode when over).
MEDIA_LIMITS = {
    "image": (10 * 1024 * 1024, 40009),
    "voice": (2 * 1024 * 1024, 40006),
    "video": (10 * 1024 * 1024, 40011),
    "file": (20 * 1024 * 1024, 40006),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024
APP_MEDIA_MSGTYPES = frozenset({"image", "voice", "video", "file"})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

CARD_TYPES = frozenset(
    {"text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"}
)
# Cards that call back and are answered with a response_code; they need a task_id.
INTERACTION_CARD_TYPES = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
TASK_ID_LIMIT = 128
BUTTON_LIMIT = 6
BUTTON_KEY_LIMIT = 1024
_TASK_ID = re.compile(r"[A-Za-z0-9_\-@]+")

APP_MSGTYPES = frozenset(
    {
        "text",
        "markdown",
        "image",
        "voice",
        "video",
        "file",
        "textcard",
        "news",
        "mpnews",
        "miniprogram_notice",
        "template_card",
    }
)
ROBOT_MSGTYPES = frozenset(
    {"text", "markdown", "markdown_v2", "image", "news", "file", "voice", "template_card"}
)

# A JSON \uXXXX escape: preceded by an even number of backslashes (so "\\u"
# in content, an escaped backslash followed by "u", does not count).
_UNICODE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u[0-9a-fA-F]{4}")

Clock = Callable[[], float]
