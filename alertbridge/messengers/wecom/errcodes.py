"""The WeCom errcodes alertbridge acts on, and what to do about each one.

WeCom answers HTTP 200 for almost every failure and puts the outcome in
``errcode``: a request failed iff ``errcode`` is present and not 0 (never
branch on ``errmsg``). The table below is the single place that decides, per
errcode, whether to refresh the token, retry later, or give up, so that the
client and the dispatcher never need their own ``if errcode == ...`` chains.

Source: WeCom global error codes, https://developer.work.weixin.qq.com/document/path/90313
(see docs/wecom-api.md §4.2 for the subset and its provenance).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ErrCode(IntEnum):
    OK = 0
    SYSTEM_BUSY = -1
    INVALID_SECRET = 40001
    INVALID_USERID = 40003
    INVALID_MEDIA_TYPE = 40004
    INVALID_FILE_TYPE = 40005
    INVALID_FILE_SIZE = 40006
    INVALID_MEDIA_ID = 40007
    INVALID_MSGTYPE = 40008
    INVALID_IMAGE_SIZE = 40009
    INVALID_VIDEO_SIZE = 40011
    INVALID_CORPID = 40013
    INVALID_ACCESS_TOKEN = 40014
    INVALID_REQUEST_CHARS = 40033
    INVALID_AGENTID = 40056
    INVALID_PARAMETER = 40058
    ACCESS_TOKEN_MISSING = 41001
    ACCESS_TOKEN_EXPIRED = 42001
    MEDIA_EMPTY = 44001
    # Button errcodes of the legacy task card (任务卡片), worded without a card
    # type in the errcode table; template cards document 42038/42039 instead.
    BUTTON_KEY_NOT_FOUND = 42017
    INVALID_BUTTON_KEY = 42018
    BUTTON_KEY_MISSING = 42019
    BUTTON_NAME_MISSING = 42020
    INVALID_CARD_BUTTON_TEXT = 42038
    INVALID_CARD_BUTTON_KEY = 42039
    CALLBACK_URL_REQUIRED = 43012
    CONTENT_EMPTY = 44004
    CONTENT_TOO_LONG = 45002
    TOO_MANY_ARTICLES = 45008
    FREQUENCY_LIMIT = 45009
    CONCURRENCY_LIMIT = 45033
    API_UNAUTHORIZED = 48002
    API_REVOKED = 48006
    OUT_OF_VISIBILITY = 60011
    IP_NOT_ALLOWED = 60020
    INVALID_USER = 60111
    INVALID_RESPONSE_CODE = 60140
    ALL_RECIPIENTS_INVALID = 81013
    NO_RECIPIENTS = 82001
    # appchat (应用群聊), docs §6.
    INVALID_CHATID = 86001
    CHAT_NOT_FOUND = 86003
    CHAT_NOT_OWN = 86008
    CHATID_EXISTS = 86215
    INVALID_CHAT_MEMBER = 86216
    ROBOT_INVALID = 93000
    ROBOT_DISABLED = 93004
    TOKEN_AGENT_MISMATCH = 301002


class Action(StrEnum):
    """What the caller should do about a failed request."""

    REFRESH_TOKEN = "refresh_token"  # drop the cached token, fetch a new one, replay once
    RETRY = "retry"  # a transient failure: retry later with backoff
    FAIL = "fail"  # retrying cannot help: dead-letter


@dataclass(frozen=True, slots=True)
class Rule:
    """How to handle one errcode.

    ``reason`` is a short fixed word for metric labels and logs. ``min_delay``
    (seconds) is the least a retry should wait: a rate limit blocks for the
    whole window, so retrying sooner only extends the block. ``hint`` tells an
    operator how to fix a configuration problem.
    """

    action: Action
    reason: str
    min_delay: float = 0.0
    hint: str = ""
    # The message itself is at fault (its characters, length, content), not
    # the app, robot or recipients: another message to them may go through.
    message_at_fault: bool = False

    @property
    def retryable(self) -> bool:
        # A token error that survives its one replay may still clear up with a
        # later token (WeCom invalidates tokens early), so it is retryable too.
        return self.action is not Action.FAIL


_TRUSTED_IP_HINT = (
    "add this server's egress IP to the app's 企业可信IP (trusted IP) list in the WeCom admin "
    "console (应用管理 → the app → 企业可信IP); the change takes about a minute to apply"
)

RULES: dict[int, Rule] = {
    ErrCode.INVALID_ACCESS_TOKEN: Rule(Action.REFRESH_TOKEN, "token_invalid"),
    ErrCode.ACCESS_TOKEN_EXPIRED: Rule(Action.REFRESH_TOKEN, "token_expired"),
    ErrCode.SYSTEM_BUSY: Rule(Action.RETRY, "server_busy"),
    # 45009 blocks the caller for the rest of the window (minute, hour or day):
    # wait at least a minute before trying again.
    ErrCode.FREQUENCY_LIMIT: Rule(Action.RETRY, "rate_limited", min_delay=60.0),
    ErrCode.CONCURRENCY_LIMIT: Rule(Action.RETRY, "concurrency_limited", min_delay=1.0),
    ErrCode.INVALID_SECRET: Rule(
        Action.FAIL,
        "invalid_secret",
        hint="check the app's secret in the config; it changes when an admin resets it, "
        "and repeated failures can get this IP blocked for an hour",
    ),
    ErrCode.INVALID_CORPID: Rule(Action.FAIL, "invalid_corp_id", hint="check corp_id in the config"),
    ErrCode.ACCESS_TOKEN_MISSING: Rule(Action.FAIL, "token_missing"),
    ErrCode.INVALID_USERID: Rule(Action.FAIL, "invalid_recipient"),
    ErrCode.INVALID_USER: Rule(Action.FAIL, "invalid_recipient"),
    ErrCode.INVALID_MSGTYPE: Rule(Action.FAIL, "invalid_msgtype"),
    ErrCode.INVALID_REQUEST_CHARS: Rule(Action.FAIL, "invalid_characters", message_at_fault=True),
    ErrCode.INVALID_AGENTID: Rule(Action.FAIL, "invalid_agent_id", hint="check agent_id in the config"),
    ErrCode.TOKEN_AGENT_MISMATCH: Rule(
        Action.FAIL,
        "agent_mismatch",
        hint="the app's agent_id does not belong to its secret; check both in the config",
    ),
    # 40058 covers bad JSON and missing fields too, but for a rendered message
    # it almost always means a content length limit (robot markdown > 4096 B).
    ErrCode.INVALID_PARAMETER: Rule(Action.FAIL, "invalid_parameter", message_at_fault=True),
    ErrCode.CONTENT_EMPTY: Rule(Action.FAIL, "content_empty", message_at_fault=True),
    ErrCode.CONTENT_TOO_LONG: Rule(Action.FAIL, "content_too_long", message_at_fault=True),
    # More than 8 news articles: alertbridge packs at most 8 (``articles``).
    ErrCode.TOO_MANY_ARTICLES: Rule(Action.FAIL, "too_many_articles", message_at_fault=True),
    # Also what appchat/* answers an app whose visibility is not the root department.
    ErrCode.API_UNAUTHORIZED: Rule(
        Action.FAIL,
        "unauthorized",
        hint="the app may not call this API: group chats (appchat) need the app's visible range "
        "(可见范围) to be the root department; contact reads need contact permission",
    ),
    ErrCode.API_REVOKED: Rule(
        Action.FAIL,
        "unauthorized",
        hint="WeCom revoked the app's API permission after long disuse; re-enable it in the admin console",
    ),
    ErrCode.OUT_OF_VISIBILITY: Rule(
        Action.FAIL,
        "out_of_visibility",
        hint="add the recipients to the app's visible range (可见范围) in the WeCom admin console",
    ),
    ErrCode.IP_NOT_ALLOWED: Rule(Action.FAIL, "ip_not_allowed", hint=_TRUSTED_IP_HINT),
    ErrCode.BUTTON_KEY_NOT_FOUND: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.INVALID_BUTTON_KEY: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.BUTTON_KEY_MISSING: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.BUTTON_NAME_MISSING: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.INVALID_CARD_BUTTON_TEXT: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.INVALID_CARD_BUTTON_KEY: Rule(Action.FAIL, "invalid_card_button"),
    ErrCode.CALLBACK_URL_REQUIRED: Rule(
        Action.FAIL,
        "callback_url_required",
        hint="cards with buttons need the app's 接收消息 callback URL configured in the WeCom admin console",
    ),
    # A response_code works once and expires (24 h to be safe; the newest doc
    # says 72 h): retrying the same code can never succeed.
    ErrCode.INVALID_RESPONSE_CODE: Rule(
        Action.FAIL,
        "invalid_response_code",
        hint="a response_code can update a card only once and only within about 24 hours; "
        "use the fresh one from the latest click callback",
    ),
    ErrCode.ALL_RECIPIENTS_INVALID: Rule(Action.FAIL, "all_recipients_invalid"),
    ErrCode.NO_RECIPIENTS: Rule(Action.FAIL, "no_recipients"),
    ErrCode.INVALID_CHATID: Rule(
        Action.FAIL,
        "invalid_chatid",
        hint="a chatid is at most 32 letters or digits; check the receiver's chatid",
    ),
    ErrCode.CHAT_NOT_FOUND: Rule(
        Action.FAIL,
        "chat_not_found",
        hint="no group chat has this chatid; create it with `alertbridge appchat create`",
    ),
    ErrCode.CHAT_NOT_OWN: Rule(
        Action.FAIL,
        "chat_not_own",
        hint="an app can only use group chats it created itself; check the receiver's app and chatid",
    ),
    ErrCode.CHATID_EXISTS: Rule(
        Action.FAIL, "chatid_exists", hint="a group chat with this chatid exists; choose another chatid"
    ),
    ErrCode.INVALID_CHAT_MEMBER: Rule(
        Action.FAIL,
        "invalid_chat_member",
        hint="a member is not a valid user id of the corp (or outside the app's visible range)",
    ),
    ErrCode.ROBOT_INVALID: Rule(
        Action.FAIL,
        "robot_invalid",
        hint="the robot key is wrong or the robot was removed from its group chat",
    ),
    ErrCode.ROBOT_DISABLED: Rule(Action.FAIL, "robot_disabled"),
    # media/upload refusals (docs §7): the file breaks a rule media_rules.py
    # checks first, so seeing one means WeCom's rules changed.
    ErrCode.INVALID_MEDIA_TYPE: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    ErrCode.INVALID_FILE_TYPE: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    ErrCode.INVALID_FILE_SIZE: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    ErrCode.INVALID_IMAGE_SIZE: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    ErrCode.INVALID_VIDEO_SIZE: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    ErrCode.MEDIA_EMPTY: Rule(Action.FAIL, "media_refused", message_at_fault=True),
    # A media id WeCom no longer knows (expired early): upload again, once.
    ErrCode.INVALID_MEDIA_ID: Rule(Action.FAIL, "invalid_media_id", message_at_fault=True),
}

# What ``user/get`` / ``tag/get`` answer when the app may not read the
# contact directory (48002) or the member, department or tag lies outside
# its visible range (60011): authorization then treats the entry as matching
# nobody, never as matching everybody.
CONTACT_PERMISSION_DENIED: frozenset[int] = frozenset({ErrCode.API_UNAUTHORIZED, ErrCode.OUT_OF_VISIBILITY})

# Unknown errcodes are permanent: retrying a request WeCom rejected for a
# reason we do not understand only repeats the rejection (Alertmanager's
# wechat notifier makes the same choice).
UNKNOWN = Rule(Action.FAIL, "api_error")


def classify(errcode: int) -> Rule:
    """The handling rule for ``errcode`` (``UNKNOWN`` if we have none)."""
    return RULES.get(errcode, UNKNOWN)


def is_token_error(errcode: int) -> bool:
    return classify(errcode).action is Action.REFRESH_TOKEN


def errcode_name(errcode: int) -> str:
    """A metrics label for ``errcode``: its lower-case name, or ``other`` for codes we have no name for."""
    try:
        return ErrCode(errcode).name.lower()
    except ValueError:
        return "other"
