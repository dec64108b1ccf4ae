"""Origin check for WebSocket handshakes."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]
    """Refuse a handshake whose Origin is not one of ALLOWED_HOSTS.

    Browsers always send Origin on a WebSocket handshake, and cross-site WebSocket hijacking
    needs a browser, so a foreign Origin is refused. Non-browser clients (other services with a
    ticket) usually send none; they are let through to authentication, which they must pass.
    """

    def __init__(self, application: Any) -> None:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(super().valid_origin(parsed_origin))
