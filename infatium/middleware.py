"""Request middleware: health probes first, then the request id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from infatium.logging import bind, unbind

# An incoming X-Request-ID (from a proxy or a client) is kept when it looks like an id, so one
# request can be followed across services; anything else (too long, spaces, quotes, control
# characters) is replaced rather than written into every log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

Handler = Callable[[HttpRequest], Any]


class _Both:
    """A middleware that runs in the sync and the async request path alike."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class ProbeMiddleware(_Both):
    """Answers GET /healthz and /readyz before anything else runs: no host check (a container
    healthcheck calls 127.0.0.1, which ALLOWED_HOSTS need not list), no session, no database
    query other than the readiness check's own."""

    def _probe(self, request: HttpRequest) -> Callable[[HttpRequest], Any] | None:
        if request.method not in ("GET", "HEAD"):
            return None
        from infatium import views

        return {"/healthz": views.healthz, "/readyz": views.readyz}.get(request.path_info)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        probe = self._probe(request)
        if probe is None:
            return self.get_response(request)
        if iscoroutinefunction(probe):
            return async_to_sync(probe)(request)
        return probe(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        probe = self._probe(request)
        if probe is None:
            response: HttpResponse = await self.get_response(request)
            return response
        if iscoroutinefunction(probe):
            return await probe(request)  # type: ignore[no-any-return]
        return probe(request)  # type: ignore[no-any-return]


def request_id_of(request: HttpRequest) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


class RequestIdMiddleware(_Both):
    """Every log line of a request, and its Sentry event, carries its `request_id`; the response
    says the id in X-Request-ID, so a user reporting an error can quote it."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = request_id_of(request)
        token = bind(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            unbind(token)
        response["X-Request-ID"] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_of(request)
        token = bind(request_id=request_id)
        try:
            response: HttpResponse = await self._get_response_async(request)
        finally:
            unbind(token)
        response["X-Request-ID"] = request_id
        return response

    @property
    def _get_response_async(self) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
        return self.get_response  # type: ignore[return-value]
