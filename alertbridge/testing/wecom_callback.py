"""Play WeCom's side of the callback URL: signed, encrypted requests as WeCom sends them.

Tests of ``/wecom/callback/<app>`` need requests that look exactly like
WeCom's (docs/wecom-api.md §1, §3): the GET URL check with a percent-encoded
``echostr``, and POSTs whose ``<xml><ToUserName/><Encrypt/><AgentID/></xml>``
envelope wraps an AES-encrypted message, signed in the query string.

This helper deliberately does **not** use ``alertbridge.messengers.wecom.crypto``: it
computes signatures, padding and AES itself (pycryptodome only for the block
cipher), so a bug shared by the service and its test helper cannot cancel
out. tests/test_fake_wecom_cards.py pins both to the published known-answer
vectors.

Style: sync ``httpx.Client`` methods (``verify_url``, ``send_text`` …) for
tests against a served app (``alertbridge.testing.server``). Every send has a
``build_*`` twin returning an ``httpx.Request``, which an ``httpx.AsyncClient``
can send too (``await client.send(request)``), e.g. with an ASGI transport.

    with CallbackClient(base_url, "/wecom/callback/ops", TOKEN, AES_KEY, CORP_ID, 1000002,
                        response_codes=fake.new_response_code_for) as wecom:
        assert wecom.verify_url("1616140317555161061").text == "1616140317555161061"
        wecom.send_text("zhangsan", "ack 12")
        wecom.click_button("zhangsan", task_id, "ack")  # with a fresh response_code from the fake
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DefusedET  # type: ignore[import-untyped]
import httpx
from Crypto.Cipher import AES

_PAD_BLOCK = 32  # WeCom's PKCS#7 block, not AES's 16


@dataclass(frozen=True, slots=True)
class PassiveReply:
    """A passive reply as WeCom would read it from a callback response:
    ``content`` is a text reply's Content or an ``update_button``'s ReplaceName;
    ``plaintext`` the decrypted XML; ``received_at`` wall-clock seconds."""

    to_user: str
    msg_type: str
    content: str
    plaintext: bytes
    received_at: float


class CallbackClient:
    """Sends callback requests for one app as WeCom would.

    ``path`` is the callback path on ``base_url`` (e.g. ``/wecom/callback/ops``).
    ``response_codes(task_id)`` supplies the fresh ResponseCode of each button
    click (pass ``FakeWeCom.new_response_code_for``); without it a random code
    is used, which no fake accepts. ``clock`` (epoch seconds) sets timestamps
    and default CreateTimes; ``random_bytes`` the 16-byte random prefix.
    """

    def __init__(
        self,
        base_url: str,
        path: str,
        token: str,
        encoding_aes_key: str,
        corp_id: str,
        agent_id: int,
        *,
        http: httpx.Client | None = None,
        response_codes: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        timeout: float = 5.0,
    ) -> None:
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self.url = base_url.rstrip("/") + path
        self.token = token
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._key = key
        self._response_codes = response_codes
        self._clock = clock
        self._random_bytes = random_bytes
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self.last_request: httpx.Request | None = None
        # The non-empty answers to POSTs, with when they came (read through ``passive``).
        self._answers: list[tuple[bytes, float]] = []

    # ---- the protocol, computed independently of alertbridge.messengers.wecom.crypto --

    def sign(self, timestamp: str, nonce: str, payload: str) -> str:
        """msg_signature: SHA-1 hex of token, timestamp, nonce and payload, sorted and joined."""
        parts = sorted([self.token, timestamp, nonce, payload])
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()  # noqa: S324 - WeCom's protocol

    def encrypt(self, plaintext: bytes) -> str:
        """The base64 ``Encrypt``/``echostr`` value for ``plaintext``, addressed to our corp."""
        body = self._random_bytes(16) + len(plaintext).to_bytes(4, "big") + plaintext + self.corp_id.encode()
        pad = _PAD_BLOCK - len(body) % _PAD_BLOCK
        body += bytes([pad] * pad)
        cipher = AES.new(self._key, AES.MODE_CBC, iv=self._key[:16])
        return base64.b64encode(cipher.encrypt(body)).decode("ascii")

    def decrypt_reply(self, body: bytes) -> bytes:
        """Check and decrypt an encrypted passive reply (``<Encrypt>``, ``<MsgSignature>`` …).

        Raises ``AssertionError`` when the reply is not what WeCom would accept:
        a wrong signature, bad padding or a receive id other than our CorpID.
        """
        root: Element = DefusedET.fromstring(body, forbid_dtd=True)
        fields = {
            name: root.findtext(name) or "" for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")
        }
        expected = self.sign(fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        if not hmac.compare_digest(expected, fields["MsgSignature"]):
            raise AssertionError("reply signature does not verify")
        cipher = AES.new(self._key, AES.MODE_CBC, iv=self._key[:16])
        data = cipher.decrypt(base64.b64decode(fields["Encrypt"]))
        pad = data[-1] if data else 0
        if not 1 <= pad <= _PAD_BLOCK or data[-pad:] != bytes([pad] * pad):
            raise AssertionError("reply padding is not 32-byte PKCS#7")
        data = data[:-pad]
        length = int.from_bytes(data[16:20], "big")
        if data[20 + length :] != self.corp_id.encode():
            raise AssertionError("reply is not addressed to our CorpID")
        return data[20 : 20 + length]

    def envelope(self, encrypted: str) -> bytes:
        """The POST body WeCom wraps an encrypted message in."""
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<AgentID>{_cdata(str(self.agent_id))}</AgentID></xml>"
        ).encode()

    # ---- plaintext messages -----------------------------------------------

    def text_xml(self, from_user: str, content: str, msg_id: str, create_time: int) -> bytes:
        """A decrypted text message (docs §3.1)."""
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time}</CreateTime>"
            f"<MsgType>{_cdata('text')}</MsgType>"
            f"<Content>{_cdata(content)}</Content>"
            f"<MsgId>{msg_id}</MsgId>"
            f"<AgentID>{self.agent_id}</AgentID></xml>"
        ).encode()

    def event_xml(self, from_user: str, event: str, create_time: int, **fields: str) -> bytes:
        """A decrypted event (docs §3.2); ``fields`` are extra elements such as
        ``EventKey``, ``TaskId``, ``CardType``, ``ResponseCode``, in order."""
        extra = "".join(f"<{name}>{_cdata(value)}</{name}>" for name, value in fields.items())
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time}</CreateTime>"
            f"<MsgType>{_cdata('event')}</MsgType>"
            f"<Event>{_cdata(event)}</Event>{extra}"
            f"<AgentID>{self.agent_id}</AgentID></xml>"
        ).encode()

    # ---- requests ------------------------------------------------------------

    def build_verify_url(
        self, echostr_plain: str | bytes, *, timestamp: str | None = None, nonce: str | None = None
    ) -> httpx.Request:
        """The GET URL check; httpx percent-encodes ``echostr`` (``+``, ``/``, ``=``) as WeCom does."""
        plain = echostr_plain.encode() if isinstance(echostr_plain, str) else echostr_plain
        timestamp, nonce = self._timestamp(timestamp), nonce or _nonce()
        echostr = self.encrypt(plain)
        params = {
            "msg_signature": self.sign(timestamp, nonce, echostr),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        return httpx.Request("GET", self.url, params=params)

    def build_message(
        self, plaintext_xml: bytes, *, timestamp: str | None = None, nonce: str | None = None
    ) -> httpx.Request:
        """A POST carrying ``plaintext_xml`` encrypted, enveloped and signed."""
        timestamp, nonce = self._timestamp(timestamp), nonce or _nonce()
        encrypted = self.encrypt(plaintext_xml)
        params = {
            "msg_signature": self.sign(timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        return self.build_raw(params, self.envelope(encrypted))

    def build_raw(self, params: Mapping[str, str], body: bytes, *, method: str = "POST") -> httpx.Request:
        """A request with exactly these query parameters and body (for forged or malformed cases)."""
        headers = {"Content-Type": "text/xml"} if method == "POST" else None
        return httpx.Request(method, self.url, params=dict(params), content=body, headers=headers)

    def build_text(
        self, from_user: str, content: str, msg_id: str | None = None, create_time: int | None = None
    ) -> httpx.Request:
        created = self._create_time(create_time)
        msg_id = msg_id or str(secrets.randbits(63))
        return self.build_message(self.text_xml(from_user, content, msg_id, created))

    def build_click_menu(self, from_user: str, key: str, create_time: int | None = None) -> httpx.Request:
        xml = self.event_xml(from_user, "click", self._create_time(create_time), EventKey=key)
        return self.build_message(xml)

    def build_enter_agent(self, from_user: str, create_time: int | None = None) -> httpx.Request:
        xml = self.event_xml(from_user, "enter_agent", self._create_time(create_time), EventKey="")
        return self.build_message(xml)

    def build_click_button(
        self,
        from_user: str,
        task_id: str,
        key: str,
        response_code: str | None = None,
        *,
        card_type: str = "button_interaction",
        create_time: int | None = None,
    ) -> httpx.Request:
        """A ``template_card_event``: ``response_code`` defaults to a fresh one from
        ``response_codes`` (the fake), as WeCom puts a new code into every click."""
        if response_code is None:
            response_code = (
                self._response_codes(task_id)
                if self._response_codes is not None
                else secrets.token_urlsafe(32)
            )
        xml = self.event_xml(
            from_user,
            "template_card_event",
            self._create_time(create_time),
            EventKey=key,
            TaskId=task_id,
            CardType=card_type,
            ResponseCode=response_code,
        )
        return self.build_message(xml)

    # ---- sending (sync) --------------------------------------------------------

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send a built request; it is kept as ``last_request`` for ``resend``."""
        self.last_request = request
        response = self._http.send(request)
        if request.method == "POST" and response.status_code == 200 and response.content:
            self._answers.append((response.content, time.time()))
        return response

    @property
    def passive(self) -> list[PassiveReply]:
        """Every passive reply answered to a POST, checked and decrypted, oldest
        first (AssertionError if one is not what WeCom would accept)."""
        return [self.read_reply(body, at) for body, at in self._answers]

    def read_reply(self, body: bytes, received_at: float | None = None) -> PassiveReply:
        """Check, decrypt and parse a passive reply body (AssertionError if WeCom would refuse it)."""
        plaintext = self.decrypt_reply(body)
        root: Element = DefusedET.fromstring(plaintext, forbid_dtd=True)
        if root.findtext("FromUserName") != self.corp_id:
            raise AssertionError("passive reply is not from our CorpID")
        msg_type = root.findtext("MsgType") or ""
        content = (
            root.findtext("Button/ReplaceName") if msg_type == "update_button" else root.findtext("Content")
        )
        at = received_at if received_at is not None else time.time()
        return PassiveReply(root.findtext("ToUserName") or "", msg_type, content or "", plaintext, at)

    def resend(self) -> httpx.Response:
        """Send the last request again, byte for byte, as WeCom's retry after 5 s of silence."""
        if self.last_request is None:
            raise RuntimeError("nothing was sent yet")
        last = self.last_request
        return self.send(httpx.Request(last.method, last.url, headers=last.headers, content=last.content))

    def verify_url(self, echostr_plain: str | bytes) -> httpx.Response:
        return self.send(self.build_verify_url(echostr_plain))

    def send_text(
        self, from_user: str, content: str, msg_id: str | None = None, create_time: int | None = None
    ) -> httpx.Response:
        return self.send(self.build_text(from_user, content, msg_id, create_time))

    def click_menu(self, from_user: str, key: str) -> httpx.Response:
        return self.send(self.build_click_menu(from_user, key))

    def enter_agent(self, from_user: str) -> httpx.Response:
        return self.send(self.build_enter_agent(from_user))

    def click_button(
        self, from_user: str, task_id: str, key: str, response_code: str | None = None
    ) -> httpx.Response:
        return self.send(self.build_click_button(from_user, task_id, key, response_code))

    def send_xml(self, plaintext_xml: bytes) -> httpx.Response:
        """Send any decrypted message (an image, an unknown event …) properly encrypted and signed."""
        return self.send(self.build_message(plaintext_xml))

    def post_raw(self, params: Mapping[str, str], body: bytes) -> httpx.Response:
        return self.send(self.build_raw(params, body))

    def get_raw(self, params: Mapping[str, str]) -> httpx.Response:
        return self.send(self.build_raw(params, b"", method="GET"))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _timestamp(self, timestamp: str | None) -> str:
        return timestamp if timestamp is not None else str(int(self._clock()))

    def _create_time(self, create_time: int | None) -> int:
        return create_time if create_time is not None else int(self._clock())


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA: end the section and start a new one around it.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _nonce() -> str:
    # WeCom's nonces are usually decimal digits (not guaranteed, docs §1.2).
    return str(secrets.randbelow(10**10))
