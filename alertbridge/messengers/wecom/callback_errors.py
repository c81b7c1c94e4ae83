"""Errors raised while authenticating and reading a WeCom callback request.

    AlertbridgeError
     └── CallbackError          a callback request we refuse to act on
          ├── SignatureMismatch      msg_signature does not match (-40001)
          ├── StaleTimestamp         timestamp missing, not a number, or outside the window
          ├── DecryptError           base64, AES block, padding or length framing is wrong (-40007..-40010)
          ├── ReceiverMismatch       decrypted receive id is not our CorpID (-40005)
          └── MalformedMessage       XML that does not parse, has a DTD/entities, or lacks a field (-40002)

They live apart from ``alertbridge.messengers.wecom.errors`` because they are not
delivery failures: the web layer answers them (a 4xx and a log line), the
dispatcher never sees them.

``reason`` is a short internal description for logs. It never contains key
material (token, EncodingAESKey, AES key or plaintext of a message), so it is
safe to log verbatim; the HTTP answer should still not echo it to the caller.
"""

from __future__ import annotations

from alertbridge.errors import AlertbridgeError


class CallbackError(AlertbridgeError):
    """A callback request failed authentication or could not be read."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SignatureMismatch(CallbackError):
    """``msg_signature`` is not the SHA-1 of the token, timestamp, nonce and payload."""


class StaleTimestamp(CallbackError):
    """The request's timestamp is malformed or too far from our clock (a replay or clock skew)."""


class DecryptError(CallbackError):
    """The payload is not valid base64, not whole AES blocks, or its padding/length framing is wrong."""


class ReceiverMismatch(CallbackError):
    """The payload decrypted, but it was addressed to another receive id (CorpID)."""


class MalformedMessage(CallbackError):
    """The XML does not parse, is refused (DTD, entities) or lacks a required element."""
