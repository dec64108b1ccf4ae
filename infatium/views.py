from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Process liveness only: answers without touching the database or Redis."""
    return JsonResponse({"status": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Readable by staff sessions, or with
    `Authorization: Bearer <METRICS_TOKEN>` when that is set; anyone else gets 403."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    bearer_ok = bool(token) and hmac.compare_digest(header, f"Bearer {token}")
    if not bearer_ok and not (request.user.is_authenticated and request.user.is_staff):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    from realtime.outbox import outbox_stats

    stats = outbox_stats()
    lines = [
        "# HELP infatium_outbox_pending Events written but not yet published to NATS.",
        "# TYPE infatium_outbox_pending gauge",
        f"infatium_outbox_pending {stats.pending}",
        "# HELP infatium_outbox_lag_seconds Age of the oldest unpublished event.",
        "# TYPE infatium_outbox_lag_seconds gauge",
        f"infatium_outbox_lag_seconds {stats.lag_seconds:.3f}",
        "# HELP infatium_outbox_failing Unpublished events whose publishing failed at least once.",
        "# TYPE infatium_outbox_failing gauge",
        f"infatium_outbox_failing {stats.failing}",
        "# HELP infatium_ingest_dead_letters Ingested messages given up on.",
        "# TYPE infatium_ingest_dead_letters gauge",
        f"infatium_ingest_dead_letters {stats.dead_letters}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
