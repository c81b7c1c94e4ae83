"""Errors raised by the WeCom client, as the two delivery kinds the dispatcher knows.

    DeliveryError
     ├── TransientDeliveryError
     │    ├── TransientWeComAPIError   errcode says "retry" (-1, 45009, 45033, token errors)
     │    └── WeComTransportError      timeout, connection error, HTTP 5xx/429, non-JSON answer
     └── PermanentDeliveryError
          ├── PermanentWeComAPIError   every other errcode (bad secret, 60020, 81013 …)
          └── WeComHTTPError           any other non-200 status (wrong api_base, proxy refusal)

``WeComAPIError`` is the common base of both API error classes, so callers
can catch "WeCom said no" regardless of kind; ``api_error()`` picks the class
from the table in ``alertbridge.messengers.wecom.errcodes``.

No message here may carry a credential. WeCom puts them in the query string
(``access_token``, ``corpsecret``, ``key``), and httpx exceptions carry the
request URL, so the client never formats an httpx exception or URL into a
message: it passes the endpoint path and a description it scrubbed itself.
"""

from __future__ import annotations

from alertbridge.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertbridge.messengers.wecom.errcodes import classify


class WeComAPIError(DeliveryError):
    """WeCom answered with a non-zero errcode.

    ``endpoint`` is the API path without query string, e.g. ``/cgi-bin/message/send``.
    """

    def __init__(self, errcode: int, errmsg: str, endpoint: str) -> None:
        rule = classify(errcode)
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        self.hint = rule.hint
        message = f"WeCom {endpoint} failed: errcode {errcode} ({rule.reason}): {errmsg}"
        if rule.hint:
            message += f"; hint: {rule.hint}"
        super().__init__(message, reason=rule.reason)


class TransientWeComAPIError(WeComAPIError, TransientDeliveryError):
    def __init__(self, errcode: int, errmsg: str, endpoint: str) -> None:
        super().__init__(errcode, errmsg, endpoint)
        self.min_delay = classify(errcode).min_delay


class PermanentWeComAPIError(WeComAPIError, PermanentDeliveryError):
    def __init__(self, errcode: int, errmsg: str, endpoint: str) -> None:
        super().__init__(errcode, errmsg, endpoint)
        self.message_at_fault = classify(errcode).message_at_fault


def api_error(errcode: int, errmsg: str, endpoint: str) -> WeComAPIError:
    """The error for a non-zero ``errcode``, transient or permanent per the errcode table."""
    if classify(errcode).retryable:
        return TransientWeComAPIError(errcode, errmsg, endpoint)
    return PermanentWeComAPIError(errcode, errmsg, endpoint)


class WeComTransportError(TransientDeliveryError):
    """The request did not produce a WeCom answer; it may work next time.

    ``reason`` is one of ``timeout``, ``connection_error``, ``server_error``,
    ``rate_limited`` (HTTP 429) and ``bad_response``.
    """

    def __init__(self, endpoint: str, problem: str, *, reason: str, min_delay: float = 0.0) -> None:
        self.endpoint = endpoint
        self.problem = problem
        super().__init__(f"WeCom {endpoint} failed: {problem}", reason=reason, min_delay=min_delay)


class WeComHTTPError(PermanentDeliveryError):
    """An HTTP status WeCom itself never sends (404, 403 …): a wrong ``api_base`` or a proxy."""

    def __init__(self, endpoint: str, status: int) -> None:
        self.endpoint = endpoint
        self.status = status
        super().__init__(
            f"WeCom {endpoint} failed: HTTP {status} (check wecom.api_base and any proxy in between)",
            reason="http_error",
        )
