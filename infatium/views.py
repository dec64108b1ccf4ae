from __future__ import annotations

import asyncio
import hmac
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# Each readiness check gives up after this many seconds (a probe must answer well within its
# own timeout, docker-compose.yml's is 10 s).
READY_TIMEOUT_SECONDS = 3.0


def healthz(request: HttpRequest) -> JsonResponse:
    """Process liveness only: answers without touching the database or Redis."""
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers SELECT 1, Redis answers PING and, when NATS_URL is set,
    NATS accepts a connection and a flush. 200 when all do, else 503; the body names each check
    ("ok" or "failed"; why is logged, not shown to an anonymous caller)."""
    names = ["database", "redis"]
    checks = [_check_database(), _check_redis()]
    if settings.NATS_URL:
        names.append("nats")
        checks.append(_check_nats())
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check, READY_TIMEOUT_SECONDS) for check in checks),
        return_exceptions=True,
    )
    results = {}
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            why = f"{type(outcome).__name__}: {outcome}"
            logger.warning("readiness check %s failed: %s", name, why)
            results[name] = "failed"
        else:
            results[name] = "ok"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        connection.close_if_unusable_or_obsolete()
        raise


async def _check_database() -> None:
    await sync_to_async(_select_one)()


async def _check_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=READY_TIMEOUT_SECONDS,
        socket_timeout=READY_TIMEOUT_SECONDS,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _check_nats() -> None:
    from realtime.jetstream import connect

    client = await connect(name="readyz", reconnect=False)
    try:
        await client.flush(timeout=READY_TIMEOUT_SECONDS)
    finally:
        await client.close()


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format (see infatium.metrics). Readable by staff sessions, or with
    `Authorization: Bearer <METRICS_TOKEN>` when that is set; anyone else gets 403."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    # Bytes: compare_digest refuses str with non-ASCII characters (a 500 for a junk header).
    bearer_ok = bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    if not bearer_ok and not (request.user.is_authenticated and request.user.is_staff):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    from infatium.metrics import render

    return HttpResponse(render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
