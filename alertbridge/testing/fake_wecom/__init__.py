"""A fake WeCom (企业微信) server API that enforces what the real one enforces.

It serves ``gettoken``, ``message/send`` and ``webhook/send`` with the real
errcodes (docs/wecom-api.md §4-5), so the client, the channels and end-to-end
tests run against the same checks WeCom would apply:

- tokens per app, expiring after ``token_lifetime`` (42001), unknown (40014),
  missing (41001); wrong corp id (40013) or secret (40001);
- request bodies must be UTF-8 JSON without ``\\uXXXX`` escapes (40033);
- content limits in UTF-8 bytes: app text 2048 (45002), app markdown 2048
  (40058), robot text 2048, markdown and markdown_v2 4096 (40058);
- recipients: none (82001), some unknown (listed in ``invaliduser``, the rest
  still delivered), all unknown (81013);
- ``enable_duplicate_check``: an identical request within the interval is
  answered ok but not delivered again;
- per app and member at most 30 messages a minute and 1000 an hour; the
  excess is answered ok and **silently dropped**, as WeCom does;
- per robot at most 20 messages a minute, then 45009;
- template cards (docs §4.3): ``task_id`` format (``[A-Za-z0-9_-@]``, at most
  128 bytes) and uniqueness per app (40058), required for interaction cards;
  ``button_interaction`` needs ``main_title.title`` or ``sub_title_text``
  (42033) and 1-6 buttons with a ``text`` (42038) and a unique ``key`` of at
  most 1024 bytes (42039); interaction cards are answered with a fresh
  ``response_code``;
- ``message/update_template_card`` (docs §4.4): same token and agentid checks
  as message/send; the ``response_code`` must be one the fake issued for this
  app, unused and younger than ``response_code_lifetime`` (24 h), else 60140;
  each code works **once**. ``new_response_code_for(task_id)`` mints the fresh
  code WeCom puts into each click callback;
- ``media/upload`` (docs §7): same token checks; ``type`` one of
  image/voice/video/file (40004); a multipart part ``media`` with content
  (44001) of more than 5 bytes (40006) and at most the type's limit (image
  10 MB: 40009, video 10 MB: 40011, voice 2 MB and file 20 MB: 40006); an
  image must be named ``.jpg``/``.jpeg``/``.png`` and be PNG or JPEG, a
  voice AMR, a video MP4 (40005, WeCom's "invalid file type"). Media ids are valid for
  ``media_lifetime`` (3 days) for every app of the uploading corp: app
  ``image``/``voice``/``video``/``file`` messages naming an unknown, expired
  or foreign media id get 40007;
- textcard, news and notice cards: see ``fake_wecom_msgtypes``;
- robot ``image`` messages (docs §5): ``base64`` must decode, ``md5`` must be
  the MD5 of the decoded bytes, at most 2 MB, PNG or JPEG (40058 otherwise);
- ``media/get`` and the robot's ``webhook/upload_media`` (whose ids robot
  ``file``/``voice`` messages must name): in ``alertbridge.testing.fake_media``
  (``fake.media``);
- the contact reads ``user/get`` (a member's ``department`` list; unknown
  member 60111) and ``tag/get`` (``userlist`` and ``partylist``; unknown tag
  40068), from ``user_departments`` and ``tag_members``; ``contact_errcode``
  (e.g. 60011, 48002) makes both answer as to an app without contact
  permission;
- ``menu/create`` (``fake.menus``, in alertbridge.testing.fake_menu).

Tests inject faults (an errcode, an HTTP status, a delay) per endpoint, expire
all tokens, and inspect what was delivered or dropped, from Python or over
HTTP under ``/_fake/``. Time comes from an injectable clock.

The package has one module per responsibility: ``spec`` (endpoint names and
limits), ``records`` (what the fake hands out and records), ``faults``,
``parsing``, ``state`` (the attributes every part shares and the steps every
request takes), ``tokens``, ``app_send``, ``cards``, ``media_upload``,
``robot``, ``contacts``, ``control`` (the Python API), ``inspection``
(``/_fake/*``), and ``fake``, where ``FakeWeCom`` assembles them and registers
the endpoints of the sibling modules (fake_recall, fake_appchat, fake_media,
fake_menu). This module re-exports every name the single module had.

Run it standalone for manual trials::

    python -m alertbridge.testing.fake_wecom --port 8081 \\
        --corp-id ww-test --secret s3cret --agent-id 1000002 --robot-key robot-key-1
"""

from __future__ import annotations

from alertbridge.testing.fake_wecom.app_send import _app_content
from alertbridge.testing.fake_wecom.cards import (
    _card_replacement,
    _check_buttons,
    _check_card,
    _check_title,
)
from alertbridge.testing.fake_wecom.cli import (
    apps_from_args,
    build_parser,
    main,
)
from alertbridge.testing.fake_wecom.fake import FakeWeCom
from alertbridge.testing.fake_wecom.faults import (
    Fault,
    _check_endpoint,
    _FaultRate,
    _sleep_unless_disconnected,
)
from alertbridge.testing.fake_wecom.media_upload import (
    _check_media,
    _parse_multipart,
)
from alertbridge.testing.fake_wecom.parsing import (
    _agent_id,
    _answer,
    _canonical,
    _duplicate_interval,
    _folded,
    _id_list,
    _ids,
    _new_msgid,
    _parse_body,
    _refuse,
    _replace,
    _string_list,
)
from alertbridge.testing.fake_wecom.records import (
    CardUpdate,
    FakeApp,
    ManualClock,
    Message,
    Upload,
    _CardCheck,
    _IssuedCode,
    _Part,
    _Recipients,
    _Reject,
    _Token,
)
from alertbridge.testing.fake_wecom.robot import (
    _robot_image,
    _robot_message,
)
from alertbridge.testing.fake_wecom.spec import (
    _JPEG_MAGIC,
    _PNG_MAGIC,
    _TASK_ID,
    _UNICODE_ESCAPE,
    AGENT_GET,
    APP_CONTENT_LIMIT,
    APP_MEDIA_MSGTYPES,
    APP_MSGTYPES,
    APPCHAT_CREATE,
    APPCHAT_GET,
    APPCHAT_SEND,
    BUTTON_KEY_LIMIT,
    BUTTON_LIMIT,
    CARD_TYPES,
    DEFAULT_AGENT_ID,
    DEFAULT_CORP_ID,
    DEFAULT_DUPLICATE_INTERVAL,
    DEFAULT_ROBOT_KEY,
    DEFAULT_SECRET,
    ENDPOINTS,
    GETTOKEN,
    IMAGE_EXTENSIONS,
    INTERACTION_CARD_TYPES,
    MAX_DUPLICATE_INTERVAL,
    MEDIA_LIFETIME,
    MEDIA_LIMITS,
    MEDIA_MIN_BYTES,
    MEDIA_UPLOAD,
    MEMBER_PER_HOUR,
    MEMBER_PER_MINUTE,
    MESSAGE_RECALL,
    MESSAGE_SEND,
    RESPONSE_CODE_LIFETIME,
    ROBOT_IMAGE_LIMIT,
    ROBOT_MARKDOWN_LIMIT,
    ROBOT_MSGTYPES,
    ROBOT_PER_MINUTE,
    ROBOT_TEXT_LIMIT,
    TAG_GET,
    TASK_ID_LIMIT,
    UPDATE_TEMPLATE_CARD,
    USER_GET,
    WEBHOOK_SEND,
    Clock,
)

__all__ = [
    "AGENT_GET",
    "APPCHAT_CREATE",
    "APPCHAT_GET",
    "APPCHAT_SEND",
    "APP_CONTENT_LIMIT",
    "APP_MEDIA_MSGTYPES",
    "APP_MSGTYPES",
    "BUTTON_KEY_LIMIT",
    "BUTTON_LIMIT",
    "CARD_TYPES",
    "DEFAULT_AGENT_ID",
    "DEFAULT_CORP_ID",
    "DEFAULT_DUPLICATE_INTERVAL",
    "DEFAULT_ROBOT_KEY",
    "DEFAULT_SECRET",
    "ENDPOINTS",
    "GETTOKEN",
    "IMAGE_EXTENSIONS",
    "INTERACTION_CARD_TYPES",
    "MAX_DUPLICATE_INTERVAL",
    "MEDIA_LIFETIME",
    "MEDIA_LIMITS",
    "MEDIA_MIN_BYTES",
    "MEDIA_UPLOAD",
    "MEMBER_PER_HOUR",
    "MEMBER_PER_MINUTE",
    "MESSAGE_RECALL",
    "MESSAGE_SEND",
    "RESPONSE_CODE_LIFETIME",
    "ROBOT_IMAGE_LIMIT",
    "ROBOT_MARKDOWN_LIMIT",
    "ROBOT_MSGTYPES",
    "ROBOT_PER_MINUTE",
    "ROBOT_TEXT_LIMIT",
    "TAG_GET",
    "TASK_ID_LIMIT",
    "UPDATE_TEMPLATE_CARD",
    "USER_GET",
    "WEBHOOK_SEND",
    "_JPEG_MAGIC",
    "_PNG_MAGIC",
    "_TASK_ID",
    "_UNICODE_ESCAPE",
    "CardUpdate",
    "Clock",
    "FakeApp",
    "FakeWeCom",
    "Fault",
    "ManualClock",
    "Message",
    "Upload",
    "_CardCheck",
    "_FaultRate",
    "_IssuedCode",
    "_Part",
    "_Recipients",
    "_Reject",
    "_Token",
    "_agent_id",
    "_answer",
    "_app_content",
    "_canonical",
    "_card_replacement",
    "_check_buttons",
    "_check_card",
    "_check_endpoint",
    "_check_media",
    "_check_title",
    "_duplicate_interval",
    "_folded",
    "_id_list",
    "_ids",
    "_new_msgid",
    "_parse_body",
    "_parse_multipart",
    "_refuse",
    "_replace",
    "_robot_image",
    "_robot_message",
    "_sleep_unless_disconnected",
    "_string_list",
    "apps_from_args",
    "build_parser",
    "main",
]
