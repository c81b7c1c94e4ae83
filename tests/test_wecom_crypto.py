"""WeCom callback crypto: the 12 published known-answer vectors, strict padding,
round trips, tampering, replay windows and hostile XML (docs/wecom-api.md §1-2).

The vectors are a copy of the research file (tests/data/wecom_crypto_vectors.json);
every one names its source. Ciphertexts the vectors do not cover are built here
with pycryptodome directly, independent of the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.errors import AlertbridgeError
from alertbridge.messengers.wecom.crypto import (
    CallbackCrypto,
    CallbackError,
    DecryptError,
    MalformedMessage,
    ReceiverMismatch,
    SignatureMismatch,
    StaleTimestamp,
    check_timestamp,
)
from alertbridge.messengers.wecom.inbound import parse_inbound

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "wecom_crypto_vectors.json").read_text(encoding="utf-8")
)["vectors"]
BY_ID = {v["id"]: v for v in VECTORS}
POSITIVE = [v for v in VECTORS if v["kind"] != "verify_url_negative" and "msg_signature" in v]
VERIFY_URL = [v for v in VECTORS if v["kind"] == "verify_url"]
DECRYPT = [v for v in VECTORS if v["kind"] in ("decrypt_post", "decrypt_post_json")]

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def crypto_for(vector: dict[str, Any], receive_id: str | None = None) -> CallbackCrypto:
    return CallbackCrypto(vector["token"], vector["encoding_aes_key"], receive_id or vector["receive_id"])


def payload_of(vector: dict[str, Any]) -> str:
    return str(vector.get("echostr") or vector["encrypt"])


def raw_encrypt(plain: bytes, key_b64: str = AES_KEY) -> str:
    """AES-256-CBC with WeCom's key and IV over exactly ``plain`` (no padding added)."""
    key = base64.b64decode(key_b64 + "=")
    return base64.b64encode(AES.new(key, AES.MODE_CBC, iv=key[:16]).encrypt(plain)).decode()


def raw_decrypt(encrypted: str, key_b64: str) -> bytes:
    key = base64.b64decode(key_b64 + "=")
    return AES.new(key, AES.MODE_CBC, iv=key[:16]).decrypt(base64.b64decode(encrypted))


def frame(msg: bytes, receive_id: bytes = CORP_ID.encode()) -> bytes:
    return b"R" * 16 + len(msg).to_bytes(4, "big") + msg + receive_id


def pad(data: bytes, block: int) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, AES_KEY, CORP_ID)


# ---- the known-answer vectors ----------------------------------------------


def test_the_data_file_holds_all_twelve_vectors() -> None:
    assert len(VECTORS) == 12
    assert all(v["verified"] for v in VECTORS)


@pytest.mark.parametrize("vector", POSITIVE, ids=ids(POSITIVE))
def test_signature_vectors(vector: dict[str, Any]) -> None:
    crypto = crypto_for(vector)
    assert (
        crypto.signature(vector["timestamp"], vector["nonce"], payload_of(vector)) == vector["msg_signature"]
    )
    crypto.verify_signature(vector["msg_signature"], vector["timestamp"], vector["nonce"], payload_of(vector))


@pytest.mark.parametrize("vector", VERIFY_URL, ids=ids(VERIFY_URL))
def test_verify_url_vectors(vector: dict[str, Any]) -> None:
    plain = crypto_for(vector).verify_url(
        vector["msg_signature"], vector["timestamp"], vector["nonce"], vector["echostr"]
    )
    assert plain == vector["expected_plaintext"].encode()


@pytest.mark.parametrize(
    "vector", [v for v in VERIFY_URL if "echostr_url_encoded_as_in_query" in v], ids=lambda v: v["id"]
)
def test_url_encoded_echostr_decodes_to_the_signed_value(vector: dict[str, Any]) -> None:
    # WeCom percent-encodes echostr; a normal query parser hands us the Base64 text.
    echostr = unquote(vector["echostr_url_encoded_as_in_query"])
    assert echostr == vector["echostr"]
    crypto = crypto_for(vector)
    assert crypto.verify_url(vector["msg_signature"], vector["timestamp"], vector["nonce"], echostr) == (
        vector["expected_plaintext"].encode()
    )


@pytest.mark.parametrize("vector", DECRYPT, ids=ids(DECRYPT))
def test_decrypt_vectors(vector: dict[str, Any]) -> None:
    crypto = crypto_for(vector)
    expected = vector["expected_plaintext"].encode()
    assert vector["expected_receive_id"] == vector["receive_id"]
    assert crypto.decrypt(vector["encrypt"]) == expected
    if vector["kind"] == "decrypt_post" and "post_body" in vector:
        body = vector["post_body"].encode()
        assert (
            crypto.open_message(vector["msg_signature"], vector["timestamp"], vector["nonce"], body)
            == expected
        )


@pytest.mark.parametrize("vector", DECRYPT + VERIFY_URL, ids=ids(DECRYPT + VERIFY_URL))
def test_vectors_for_another_receive_id_are_refused(vector: dict[str, Any]) -> None:
    crypto = crypto_for(vector, receive_id="ww0000000000000000")
    with pytest.raises(ReceiverMismatch) as caught:
        crypto.decrypt(payload_of(vector))
    assert vector["expected_receive_id"] in caught.value.reason


def test_same_key_different_corp_is_refused() -> None:
    # Two go-workwx vectors share token and key but are addressed to different corps.
    first, second = BY_ID["goworkwx_decrypt_post"], BY_ID["goworkwx_signature_post2"]
    assert first["encoding_aes_key"] == second["encoding_aes_key"]
    with pytest.raises(ReceiverMismatch):
        crypto_for(first).decrypt(second["encrypt"])
    with pytest.raises(ReceiverMismatch):
        crypto_for(second).decrypt(first["encrypt"])


def test_encrypt_reply_vector_is_reproduced_byte_exactly() -> None:
    vector = BY_ID["wechatpy_encrypt_reply"]
    crypto = CallbackCrypto(
        vector["token"],
        vector["encoding_aes_key"],
        vector["receive_id"],
        random_bytes=lambda n: vector["random_prefix_ascii"].encode()[:n],
    )
    plaintext = vector["reply_plaintext"].encode()
    assert crypto.encrypt(plaintext) == vector["expected_encrypt"]
    reply = crypto.seal_reply(plaintext, vector["timestamp"], vector["nonce"])
    assert reply == vector["expected_response_xml"].encode()
    assert vector["expected_msg_signature"] in reply.decode()


def test_binary_random_prefix_vector_is_reproduced() -> None:
    vector = BY_ID["goworkwx_decrypt_post"]
    prefix = bytes.fromhex(vector["random_prefix_hex"])
    crypto = CallbackCrypto(
        vector["token"], vector["encoding_aes_key"], vector["receive_id"], random_bytes=lambda n: prefix
    )
    assert crypto.encrypt(vector["expected_plaintext"].encode()) == vector["encrypt"]


def test_bad_nonce_vector_fails_the_signature() -> None:
    vector = BY_ID["wechatpy_verify_url_bad_nonce"]
    with pytest.raises(SignatureMismatch):
        crypto_for(vector).verify_url(
            vector["msg_signature"], vector["timestamp"], vector["nonce"], vector["echostr"]
        )


def test_signature_is_sha1_of_the_sorted_strings(crypto: CallbackCrypto) -> None:
    # An independent restatement of docs §1.2 on non-numeric values.
    parts = [TOKEN, "1700000000", "VHh7ymSeb0jc4lSb", "abc+/="]
    expected = hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    assert crypto.signature("1700000000", "VHh7ymSeb0jc4lSb", "abc+/=") == expected


# ---- padding: 32-byte PKCS#7, checked strictly ------------------------------


@pytest.mark.parametrize(("vector_id", "pad_value"), [("sbzhu_decrypt_post", 22), ("doc_decrypt_post", 30)])
def test_long_pads_are_accepted(vector_id: str, pad_value: int) -> None:
    vector = BY_ID[vector_id]
    raw = raw_decrypt(vector["encrypt"], vector["encoding_aes_key"])
    assert raw[-1] == pad_value  # a 16-byte unpadder would reject these
    assert crypto_for(vector).decrypt(vector["encrypt"]) == vector["expected_plaintext"].encode()


def test_every_pad_length_round_trips(crypto: CallbackCrypto) -> None:
    seen = set()
    for size in range(64):
        encrypted = crypto.encrypt(b"x" * size)
        seen.add(raw_decrypt(encrypted, AES_KEY)[-1])
        assert crypto.decrypt(encrypted) == b"x" * size
    assert seen == set(range(1, 33))


def test_sixteen_byte_padding_is_rejected(crypto: CallbackCrypto) -> None:
    framed = frame(b"<xml/>")
    assert len(framed) % 32 < 16  # so 16-byte padding differs from 32-byte padding
    with pytest.raises(DecryptError):
        crypto.decrypt(raw_encrypt(pad(framed, 16)))
    assert crypto.decrypt(raw_encrypt(pad(framed, 32))) == b"<xml/>"


@pytest.mark.parametrize(
    ("plain", "why"),
    [
        (frame(b"hello").ljust(63, b"\x00") + b"\x00", "pad byte 0"),
        (frame(b"hello").ljust(63, b"\x21") + b"\x21", "pad byte 33"),
        (frame(b"hello").ljust(60, b"\x00") + b"\x01\x02\x04\x04", "unequal pad bytes"),
        (pad(b"R" * 16 + (9999).to_bytes(4, "big") + b"hello" + CORP_ID.encode(), 32), "length past end"),
        (pad(b"R" * 10, 32), "shorter than the header"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_framing_is_a_decrypt_error(crypto: CallbackCrypto, plain: bytes, why: str) -> None:
    assert len(plain) % 32 == 0
    with pytest.raises(DecryptError):
        crypto.decrypt(raw_encrypt(plain))


@pytest.mark.parametrize(
    "encrypted",
    ["", "not base64!", "QUJD", base64.b64encode(b"\x00" * 16).decode(), "ü" * 44, "QUJD\nRA=="],
    ids=["empty", "not-base64", "short", "one-aes-block", "non-ascii", "whitespace"],
)
def test_undecodable_payloads_are_decrypt_errors(crypto: CallbackCrypto, encrypted: str) -> None:
    with pytest.raises(DecryptError):
        crypto.decrypt(encrypted)


# ---- round trips and tampering ------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(msg=st.binary(max_size=3000))
def test_binary_round_trip(msg: bytes) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    assert crypto.decrypt(crypto.encrypt(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=1000),
    timestamp=st.integers(0, 2**40),
    nonce=st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
)
def test_unicode_reply_round_trip(text: str, timestamp: int, nonce: str) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    reply = crypto.seal_reply(text.encode("utf-8"), str(timestamp), nonce)
    # A sealed reply has the shape of an incoming envelope: open it the same way.
    signature = reply.split(b"<MsgSignature><![CDATA[")[1][:40].decode()
    assert crypto.open_message(signature, str(timestamp), nonce, reply).decode("utf-8") == text


INNER = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[ack 42]]></Content><MsgId>1234567890</MsgId><AgentID>218</AgentID></xml>"
).encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipped_ciphertext_byte_is_an_error_never_a_crash(data: st.DataObject) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    raw = bytearray(base64.b64decode(crypto.encrypt(INNER)))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    encrypted = base64.b64encode(bytes(raw)).decode()
    # Re-signed, as only someone holding the token could: decryption itself must cope.
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    signature = crypto.signature("1700000000", "1", encrypted)
    try:
        inner = crypto.open_message(signature, "1700000000", "1", body)
        parse_inbound(inner)
    except CallbackError as exc:
        assert isinstance(exc, DecryptError | ReceiverMismatch | MalformedMessage)


def test_tampered_payload_without_the_token_fails_the_signature(crypto: CallbackCrypto) -> None:
    encrypted = crypto.encrypt(INNER)
    signature = crypto.signature("1700000000", "1", encrypted)
    tampered = ("A" if encrypted[0] != "A" else "B") + encrypted[1:]
    with pytest.raises(SignatureMismatch):
        crypto.open_message(
            signature, "1700000000", "1", f"<xml><Encrypt>{tampered}</Encrypt></xml>".encode()
        )


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0" * 40,
        "5C45FF5E21C57E6AD56BAC8758B79B1D9AC89FD3",
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd",
        "ü" * 40,
    ],
    ids=["empty", "zeros", "upper-case", "truncated", "non-ascii"],
)
def test_wrong_signatures_are_refused(signature: str) -> None:
    vector = BY_ID["doc_verify_url"]
    with pytest.raises(SignatureMismatch):
        crypto_for(vector).verify_url(signature, vector["timestamp"], vector["nonce"], vector["echostr"])


@pytest.mark.parametrize("field", ["timestamp", "nonce", "echostr"])
def test_signature_covers_every_value(field: str) -> None:
    vector = dict(BY_ID["doc_verify_url"])
    vector[field] = vector[field][:-1] + ("1" if vector[field][-1] != "1" else "2")
    with pytest.raises(SignatureMismatch):
        crypto_for(vector).verify_url(
            vector["msg_signature"], vector["timestamp"], vector["nonce"], vector["echostr"]
        )


def test_wrong_corp_is_a_receiver_mismatch(crypto: CallbackCrypto) -> None:
    other = CallbackCrypto(TOKEN, AES_KEY, "ww-other-corp")
    with pytest.raises(ReceiverMismatch):
        crypto.decrypt(other.encrypt(b"<xml/>"))


@pytest.mark.parametrize(
    ("token", "key", "receive_id"),
    [
        (TOKEN, AES_KEY[:-1], CORP_ID),
        (TOKEN, AES_KEY + "A", CORP_ID),
        (TOKEN, "!" * 43, CORP_ID),
        (TOKEN, "", CORP_ID),
        ("", AES_KEY, CORP_ID),
        (TOKEN, AES_KEY, ""),
    ],
    ids=["42-chars", "44-chars", "not-base64", "empty-key", "empty-token", "empty-receive-id"],
)
def test_bad_configuration_is_a_value_error(token: str, key: str, receive_id: str) -> None:
    with pytest.raises(ValueError) as caught:
        CallbackCrypto(token, key, receive_id)
    if key:
        assert key not in str(caught.value)


def test_random_prefix_must_be_16_bytes() -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID, random_bytes=lambda n: b"short")
    with pytest.raises(ValueError):
        crypto.encrypt(b"x")


@pytest.mark.parametrize(
    ("timestamp", "nonce"), [("17e8", "1"), ("", "1"), ("1", "a]]>b"), ("1", ""), ("1", "x" * 65)]
)
def test_seal_reply_refuses_values_that_would_break_the_xml(
    crypto: CallbackCrypto, timestamp: str, nonce: str
) -> None:
    with pytest.raises(ValueError):
        crypto.seal_reply(b"<xml/>", timestamp, nonce)


def test_errors_and_repr_never_show_key_material(crypto: CallbackCrypto) -> None:
    key_bytes = base64.b64decode(AES_KEY + "=")
    failures: list[CallbackError] = []
    calls: list[Callable[[], bytes]] = [
        lambda: crypto.verify_url("0" * 40, "1", "1", "QUJD"),
        lambda: crypto.decrypt("QUJD"),
        lambda: crypto.decrypt(raw_encrypt(pad(frame(b"x"), 16))),
        lambda: crypto.open_message("0", "1", "1", b"<xml>"),
        lambda: CallbackCrypto(TOKEN, AES_KEY, "other").decrypt(crypto.encrypt(b"x")),
    ]
    for call in calls:
        with pytest.raises(CallbackError) as caught:
            call()
        failures.append(caught.value)
    for error in failures:
        assert isinstance(error, AlertbridgeError)
        text = f"{error} {error.reason!r}"
        assert TOKEN not in text and AES_KEY not in text and repr(key_bytes)[2:-1] not in text
    assert TOKEN not in repr(crypto) and AES_KEY not in repr(crypto)


# ---- the timestamp window -------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_timestamp_window(offset: int, ok: bool) -> None:
    now = 1_700_000_000.0
    timestamp = str(int(now) + offset)
    if ok:
        check_timestamp(timestamp, now, 300)
    else:
        with pytest.raises(StaleTimestamp):
            check_timestamp(timestamp, now, 300)


def test_zero_window_disables_the_freshness_check() -> None:
    check_timestamp(BY_ID["doc_decrypt_post"]["timestamp"], 1_700_000_000.0, 0)


@pytest.mark.parametrize("timestamp", ["", "abc", "12.5", "-5", " 1700000000", "1e9", "١٧٠٠٠٠٠٠٠٠", "9" * 21])
@pytest.mark.parametrize("window", [300, 0])
def test_non_numeric_timestamps_are_stale(timestamp: str, window: int) -> None:
    with pytest.raises(StaleTimestamp):
        check_timestamp(timestamp, 1_700_000_000.0, window)


# ---- hostile envelopes ------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><Encrypt>&xxe;</Encrypt></xml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<xml><Encrypt>&lol9;</Encrypt></xml>"""

EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://attacker.invalid/x.dtd"><xml><Encrypt>QUJD</Encrypt></xml>'
EMPTY_DTD = b"<!DOCTYPE xml><xml><Encrypt>QUJD</Encrypt></xml>"


@pytest.mark.parametrize(
    "body",
    [
        XXE,
        BILLION_LAUGHS,
        EXTERNAL_DTD,
        EMPTY_DTD,
        b"",
        b"<xml>",
        b"not xml",
        b"<xml></xml>",
        b"<xml><Encrypt/></xml>",
        b"<other><Encrypt>QUJD</Encrypt></other>",
        b"\xff\xfe<xml/>",
    ],
    ids=[
        "xxe",
        "billion-laughs",
        "external-dtd",
        "empty-dtd",
        "empty",
        "unclosed",
        "text",
        "no-encrypt",
        "empty-encrypt",
        "wrong-root",
        "bad-bytes",
    ],
)
def test_hostile_or_broken_envelopes_are_malformed(crypto: CallbackCrypto, body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        crypto.open_message("0" * 40, "1700000000", "1", body)


def test_envelope_fields_outside_encrypt_are_ignored(crypto: CallbackCrypto) -> None:
    encrypted = crypto.encrypt(INNER)
    body = f"<xml><ToUserName>ww-forged</ToUserName><Encrypt>{encrypted}</Encrypt><AgentID>9</AgentID></xml>"
    signature = crypto.signature("1700000000", "1", encrypted)
    assert crypto.open_message(signature, "1700000000", "1", body.encode()) == INNER
