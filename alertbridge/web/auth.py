"""Inbound webhook authentication: a bearer token and/or HTTP basic auth.

Comparisons are constant-time so a caller cannot learn the token byte by byte
from response timing.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from alertbridge.config import WebhookAuthConfig


class WebhookAuthenticator:
    """Accepts a request if it carries any one of the configured credentials."""

    def __init__(self, config: WebhookAuthConfig | None) -> None:
        self._bearer: bytes | None = None
        self._basic: tuple[bytes, bytes] | None = None
        if config is not None and config.bearer_token is not None:
            self._bearer = config.bearer_token.get_secret_value().encode()
        if config is not None and config.basic_auth is not None:
            self._basic = (
                config.basic_auth.username.encode(),
                config.basic_auth.password.get_secret_value().encode(),
            )

    @property
    def enabled(self) -> bool:
        return self._bearer is not None or self._basic is not None

    def allows(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and self._bearer is not None:
            return hmac.compare_digest(credentials.encode(), self._bearer)
        if scheme.lower() == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            # Evaluate both so a wrong user and a wrong password take equal time.
            user_ok = hmac.compare_digest(user, self._basic[0])
            password_ok = hmac.compare_digest(password, self._basic[1])
            return bool(sep) and user_ok and password_ok
        return False
