"""Checking Grafana's HMAC signature on an alerting webhook.

A contact point with ``hmacConfig`` signs each request (grafana/alerting
``http/hmac.go``): the signature header carries the lowercase hex
HMAC-SHA256, keyed with the shared secret, of the raw body — or, when the
contact point names a timestamp header, of ``<unix seconds>:<body>``, with
those seconds sent in that header.

The header names are configurable in Grafana; we look for the documented
default ``X-Grafana-Alerting-Signature`` (and ``X-Grafana-Alert-Signature``,
the fallback in grafana/alerting's code) and for the timestamp in
``X-Grafana-Alerting-Timestamp`` (Grafana's provisioning examples; Grafana
has no default name). A timestamp sent under another name is not seen, so
the signature, made over ``ts:body``, does not match and the request is
refused: failing closed, with a reason that says which header to use.

A timestamped request older (or newer) than ``MAX_SKEW_SECONDS`` is refused
even when its signature is good, which stops replays of captured requests.
Without a timestamp there is nothing to date the request by; Grafana's
scheme allows that, so it is accepted on the signature alone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from alertbridge.errors import AlertbridgeError

SIGNATURE_HEADERS = ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")
TIMESTAMP_HEADERS = ("X-Grafana-Alerting-Timestamp",)
# How far a signed request's timestamp may be from our clock, either way.
MAX_SKEW_SECONDS = 300


class SignatureError(AlertbridgeError):
    """A Grafana webhook whose HMAC signature is missing, wrong or stale (HTTP 401).

    The message is one line, safe to return to the caller: it never contains
    the secret or the expected signature.
    """


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The signature Grafana sends for ``body`` (``timestamp``: the timestamp header's value)."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    if timestamp is not None:
        mac.update(timestamp.encode() + b":")
    mac.update(body)
    return mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
) -> None:
    """Accept ``body`` only if ``headers`` carry Grafana's valid, fresh signature of it.

    ``now`` is the current Unix time; header names are matched without
    regard to case. The comparison is constant-time.

    Raises:
        SignatureError: the signature header is missing or does not match,
            the timestamp header is not a Unix time, or it is more than
            ``MAX_SKEW_SECONDS`` away from ``now``. Also for an empty
            ``secret``: a receiver meant to check signatures never accepts
            unsigned requests.
    """
    if not secret:
        raise SignatureError("the receiver's grafana_hmac_secret is empty; refusing every request")
    lowered = {name.lower(): value for name, value in headers.items()}
    provided = _first(lowered, SIGNATURE_HEADERS)
    if provided is None:
        raise SignatureError(f"missing {SIGNATURE_HEADERS[0]} header (set the contact point's HMAC secret)")
    timestamp = _first(lowered, TIMESTAMP_HEADERS)
    if timestamp is not None:
        timestamp = timestamp.strip()
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise SignatureError(f"{TIMESTAMP_HEADERS[0]} is not a Unix timestamp in seconds")
    expected = sign(secret, body, timestamp).encode()
    if not hmac.compare_digest(provided.strip().lower().encode(), expected):
        hint = (
            ""
            if timestamp is not None
            else f" (if the contact point sets a timestamp header, it must be {TIMESTAMP_HEADERS[0]})"
        )
        raise SignatureError(f"{SIGNATURE_HEADERS[0]} does not match the body{hint}")
    if timestamp is not None:
        skew = now - int(timestamp)
        if abs(skew) > MAX_SKEW_SECONDS:
            when = "old" if skew > 0 else "in the future"
            raise SignatureError(
                f"{TIMESTAMP_HEADERS[0]} is {abs(skew):.0f} s {when}; more than {MAX_SKEW_SECONDS} s is refused"
            )


def _first(lowered: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = lowered.get(name.lower())
        if value is not None:
            return value
    return None
