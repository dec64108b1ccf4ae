"""API-wide defaults named in settings.REST_FRAMEWORK: pagination and throttles.

Kept apart from the views so settings can name them without importing any app's API code.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework.pagination import CursorPagination
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while rest_framework.views is still loading.
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class IdCursorPagination(CursorPagination):
    """Newest first by id: set once at insert, unique, indexed. Rows inserted while a client
    pages appear before its first page, never inside the pages it is walking through."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class _LiveRates(SimpleRateThrottle):
    """Reads the rate when a request is checked, not when DRF was imported: DRF binds
    THROTTLE_RATES once at import, so changed settings (tests, reloads) were ignored.

    Fails open: while the cache (Redis) is unreachable requests are not throttled, rather than
    every API call failing with a 500. Quotas are counted in the database and still hold.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except (RedisError, OSError):
            logger.warning("throttle %s not applied: cache unavailable", self.scope, exc_info=True)
            return True

    def get_rate(self) -> str | None:
        try:
            rate: str | None = api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError as exc:
            raise ImproperlyConfigured(f"No throttle rate for scope {self.scope!r}") from exc
        return rate


class AnonThrottle(_LiveRates, AnonRateThrottle):
    scope = "anon"


class UserThrottle(_LiveRates, UserRateThrottle):
    scope = "user"


class WriteThrottle(_LiveRates, UserRateThrottle):
    """A stricter per-user budget for requests that change something."""

    scope = "writes"

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class AuthThrottle(_LiveRates, SimpleRateThrottle):
    """Sign-in attempts per client address, whoever they claim to be."""

    scope = "auth"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
