"""WeCom callback crypto ("加解密方案"): signatures, AES payloads, envelopes. Bytes in, bytes out.

WeCom signs and encrypts every callback request with the app's Token and
EncodingAESKey (docs/wecom-api.md §1):

- ``msg_signature`` = hex SHA-1 of the four strings {token, timestamp, nonce,
  payload} sorted and joined; the payload is ``echostr`` for the GET URL
  check and the envelope's ``<Encrypt>`` for POSTs (§1.2).
- key = base64(EncodingAESKey + "="), 32 bytes; AES-256-CBC with IV = key[:16];
  PKCS#7 padding to a multiple of **32** bytes, not AES's 16 (§1.3).
- plaintext = 16 random bytes ‖ uint32 big-endian length ‖ msg ‖ receive id,
  where the receive id of an app callback is the CorpID (§1.4).

Everything here is pure computation with no HTTP, clock or logging, so the web
layer decides what to answer and what to log. Each failure is one of the
``CallbackError`` subclasses (re-exported here) carrying a short reason that
never contains key material.

The order of checks matters and is fixed here: signature first (cheap, and
proves the sender knows the token), then decryption, then the receive id.
Padding is checked strictly (1..32, all pad bytes equal) even though the
official sample does not: a lax unpadder turns corrupt input into a wrong
length field instead of an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from Crypto.Cipher import AES

from alertbridge.messengers.wecom.callback_errors import (
    CallbackError,
    DecryptError,
    MalformedMessage,
    ReceiverMismatch,
    SignatureMismatch,
    StaleTimestamp,
)
from alertbridge.messengers.wecom.callback_xml import xml_fields

__all__ = [
    "BLOCK_SIZE",
    "CallbackCrypto",
    "CallbackError",
    "DecryptError",
    "MalformedMessage",
    "ReceiverMismatch",
    "SignatureMismatch",
    "StaleTimestamp",
    "check_timestamp",
]

# WeCom pads to 32-byte multiples (its PKCS7Encoder.block_size); AES itself uses 16.
BLOCK_SIZE = 32
_AES_BLOCK = 16
_RANDOM_PREFIX = 16
_LENGTH_FIELD = 4
_ENCODING_AES_KEY_LENGTH = 43
# A timestamp goes into the reply XML outside CDATA and is compared as a number.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")
# A nonce goes into the reply XML inside CDATA; WeCom's are digits or letters.
_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")

_REPLY_TEMPLATE = (
    "<xml>\n"
    "<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n"
    "<MsgSignature><![CDATA[{signature}]]></MsgSignature>\n"
    "<TimeStamp>{timestamp}</TimeStamp>\n"
    "<Nonce><![CDATA[{nonce}]]></Nonce>\n"
    "</xml>"
)

RandomBytes = Callable[[int], bytes]


def check_timestamp(timestamp: str, now: float, max_skew_seconds: int) -> None:
    """Reject a callback whose ``timestamp`` is not a decimal number or is too far from ``now``.

    A captured request stays validly signed forever, so the signature alone
    does not stop replays; a freshness window bounds how long a capture is
    useful (deduplication by MsgId covers the rest). ``max_skew_seconds`` 0
    disables the window, e.g. to replay WeCom's documented examples, but the
    timestamp must still be a plain decimal number: it is echoed into reply
    XML outside CDATA.

    Raises:
        StaleTimestamp: not 1-20 ASCII digits, or ``|timestamp - now| > max_skew_seconds``.
    """
    if not _TIMESTAMP.fullmatch(timestamp):
        raise StaleTimestamp("timestamp is not a decimal number of seconds")
    if max_skew_seconds <= 0:
        return
    skew = int(timestamp) - now
    if abs(skew) > max_skew_seconds:
        raise StaleTimestamp(f"timestamp is {skew:+.0f} s from our clock (window ±{max_skew_seconds} s)")


class CallbackCrypto:
    """Signs, verifies, encrypts and decrypts callback payloads of one WeCom app.

    ``receive_id`` is the CorpID for a self-built app's callbacks. ``random_bytes``
    supplies the 16-byte random prefix of encrypted replies; tests replace it to
    reproduce known-answer vectors, production keeps ``secrets.token_bytes``.
    """

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        """Raises ``ValueError`` if the token or receive id is empty or the key is not 43
        base64 characters decoding to 32 bytes (the message never includes the key)."""
        if not token:
            raise ValueError("callback token is empty")
        if not receive_id:
            raise ValueError("receive id (CorpID) is empty")
        if len(encoding_aes_key) != _ENCODING_AES_KEY_LENGTH:
            raise ValueError(
                f"EncodingAESKey must be {_ENCODING_AES_KEY_LENGTH} characters, got {len(encoding_aes_key)}"
            )
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise ValueError("EncodingAESKey is not valid base64") from None
        if len(key) != 32:
            raise ValueError("EncodingAESKey does not decode to a 32-byte AES key")
        self._token = token
        self._key = key
        self._iv = key[:16]
        # Decryption is CBC done as ECB blocks XOR the previous ciphertext block:
        # one ECB object serves every callback, where AES.new per message was
        # 6 µs of a callback's ~30 (Phase 10). ECB holds no state between calls.
        self._blocks = AES.new(key, AES.MODE_ECB)
        self._receive_id = receive_id.encode("utf-8")
        self._random_bytes = random_bytes

    def __repr__(self) -> str:
        # Never show the token or key.
        return f"<CallbackCrypto receive_id={self._receive_id.decode('utf-8', 'replace')!r}>"

    # ---- signatures ------------------------------------------------------

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The ``msg_signature`` WeCom computes: SHA-1 hex of the four strings, sorted and joined."""
        joined = "".join(sorted((self._token, timestamp, nonce, encrypted)))
        return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - WeCom's protocol, not our choice

    def verify_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Check ``msg_signature`` in constant time.

        Raises:
            SignatureMismatch: it is not the signature of these values.
        """
        expected = self.signature(timestamp, nonce, encrypted).encode("ascii")
        # compare_digest refuses non-ASCII str; bytes compare anything in constant time.
        if not hmac.compare_digest(expected, msg_signature.encode("utf-8", "surrogatepass")):
            raise SignatureMismatch("msg_signature does not match")

    # ---- payloads --------------------------------------------------------

    def encrypt(self, msg: bytes) -> str:
        """Encrypt ``msg`` as WeCom does; returns the base64 ``Encrypt`` value."""
        prefix = self._random_bytes(_RANDOM_PREFIX)
        if len(prefix) != _RANDOM_PREFIX:
            raise ValueError(f"random_bytes returned {len(prefix)} bytes, need {_RANDOM_PREFIX}")
        if len(msg) >= 2**32:
            raise ValueError("message too long for the 4-byte length field")
        plain = prefix + len(msg).to_bytes(_LENGTH_FIELD, "big") + msg + self._receive_id
        pad = BLOCK_SIZE - len(plain) % BLOCK_SIZE
        plain += bytes([pad]) * pad
        cipher = AES.new(self._key, AES.MODE_CBC, iv=self._iv)
        return base64.b64encode(cipher.encrypt(plain)).decode("ascii")

    def decrypt(self, encrypted_b64: str) -> bytes:
        """Decrypt an ``Encrypt``/``echostr`` value and return the message bytes.

        Raises:
            DecryptError: not base64, not whole 32-byte blocks, bad padding, or a
                length field pointing past the end.
            ReceiverMismatch: the trailing receive id is not ours.
        """
        try:
            data = base64.b64decode(encrypted_b64, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII characters in the str
            raise DecryptError("payload is not valid base64") from None
        if not data or len(data) % BLOCK_SIZE:
            raise DecryptError(f"ciphertext length {len(data)} is not a positive multiple of {BLOCK_SIZE}")
        # CBC: plaintext block i = D(ciphertext block i) XOR ciphertext block i-1 (the IV for i = 0).
        chained = self._iv + data[:-_AES_BLOCK]
        decrypted = int.from_bytes(self._blocks.decrypt(data), "big") ^ int.from_bytes(chained, "big")
        content = _unpad(decrypted.to_bytes(len(data), "big"))
        header = _RANDOM_PREFIX + _LENGTH_FIELD
        if len(content) < header:
            raise DecryptError("plaintext shorter than the random prefix and length field")
        length = int.from_bytes(content[_RANDOM_PREFIX:header], "big")
        if length > len(content) - header:
            raise DecryptError("length field points past the end of the plaintext")
        msg = content[header : header + length]
        receive_id = content[header + length :]
        if receive_id != self._receive_id:
            shown = receive_id[:64].decode("utf-8", "replace")
            raise ReceiverMismatch(f"payload is addressed to receive id {shown!r}, not ours")
        return msg

    # ---- callback requests -----------------------------------------------

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> bytes:
        """Handle the GET URL check: verify the signature over ``echostr`` and decrypt it.

        The query values must already be URL-decoded (any normal query parser
        does that). The returned plaintext is to be answered as the bare body.

        Raises:
            SignatureMismatch, DecryptError, ReceiverMismatch.
        """
        self.verify_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def open_message(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> bytes:
        """Authenticate and decrypt a POSTed callback; returns the inner message XML.

        Only ``<Encrypt>`` of the envelope is used: ToUserName and AgentID
        outside it are not covered by the signature, so nothing else in the
        envelope may be trusted (trust the decrypted XML instead).

        Raises:
            MalformedMessage: the envelope is not XML, has a DTD/entities, or lacks ``<Encrypt>``.
            SignatureMismatch, DecryptError, ReceiverMismatch.
        """
        encrypted = xml_fields(body, "envelope").get("Encrypt")
        if not encrypted:
            raise MalformedMessage("envelope has no <Encrypt> text")
        self.verify_signature(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def seal_reply(self, plaintext_xml: bytes, timestamp: str, nonce: str) -> bytes:
        """Build the encrypted passive-reply body for ``plaintext_xml`` (docs §1.7).

        ``timestamp`` and ``nonce`` may be the request's own or fresh ones; they
        are signed together with the new ``Encrypt`` value.

        Raises:
            ValueError: the timestamp is not decimal digits or the nonce not
                1-64 letters/digits (either would break the XML).
        """
        if not _TIMESTAMP.fullmatch(timestamp):
            raise ValueError("reply timestamp must be decimal digits")
        if not _NONCE.fullmatch(nonce):
            raise ValueError("reply nonce must be 1-64 letters or digits")
        encrypted = self.encrypt(plaintext_xml)
        signature = self.signature(timestamp, nonce, encrypted)
        text = _REPLY_TEMPLATE.format(
            encrypt=encrypted, signature=signature, timestamp=timestamp, nonce=nonce
        )
        return text.encode("ascii")


def _unpad(plain: bytes) -> bytes:
    """Strip WeCom's PKCS#7 padding to 32 bytes, strictly: pad value 1..32, all pad bytes equal."""
    pad = plain[-1]
    if not 1 <= pad <= BLOCK_SIZE or pad > len(plain):
        raise DecryptError("invalid padding length")
    if plain[-pad:] != bytes([pad]) * pad:
        raise DecryptError("inconsistent padding bytes")
    return plain[:-pad]
