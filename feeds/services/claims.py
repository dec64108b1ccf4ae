"""Claiming sources for polls: the dispatcher's tick (`claim_due_sources`) and "poll now"
(`claim_source_now`). The scheduling contract they keep is in the package docstring."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from feeds.models import Source, SourceKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    source_id: int
    token: str


def claim_due_sources(*, now: datetime | None = None, limit: int | None = None) -> list[Claim]:
    """Claim up to `limit` active sources whose next poll is due, oldest first.

    The rows are locked with SKIP LOCKED (PostgreSQL) and moved past the lease in the same
    transaction, so a concurrent dispatcher neither waits on nor sees them. A host that already
    has POLL_PER_HOST_CONCURRENCY polls in flight gets no more this tick: its due sources stay
    due. Telegram sources are left to the gateway when it runs (TELEGRAM_GATEWAY_ENABLED).

    A claim whose poll died (killed worker, lost message) expires after POLL_LEASE_SECONDS; the
    source is then due again (next_poll_at was set to the lease's end) and this sweeps it up.
    """
    now = now or timezone.now()
    limit = limit or settings.POLL_DISPATCH_BATCH
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    cap = settings.POLL_PER_HOST_CONCURRENCY
    with transaction.atomic():
        due = Source.objects.select_for_update(skip_locked=True).filter(
            active=True, next_poll_at__lte=now
        )
        if getattr(settings, "TELEGRAM_GATEWAY_ENABLED", False):
            due = due.exclude(kind=SourceKind.TELEGRAM)
        rows = list(due.order_by("next_poll_at").values_list("id", "host", "claimed_until")[:limit])
        hosts = {host for _, host, _ in rows}
        in_flight: dict[str, int] = dict(
            Source.objects.filter(host__in=hosts, claimed_until__gt=now)
            .values("host")
            .annotate(n=Count("id"))
            .values_list("host", "n")
        )
        chosen: list[tuple[int, uuid.UUID]] = []
        for source_id, host, claimed_until in rows:
            if claimed_until is not None and claimed_until <= now:
                logger.warning(
                    "poll of source %s was lost (lease expired); polling again", source_id
                )
            if in_flight.get(host, 0) >= cap:
                continue
            in_flight[host] = in_flight.get(host, 0) + 1
            chosen.append((source_id, uuid.uuid4()))
        taken = _take_claims(chosen, now=now, lease_until=lease_until)
    return [Claim(source_id=i, token=str(token)) for i, token in chosen if i in taken]


_CLAIM_SQL = """
UPDATE feeds_source AS s SET claim_token = v.token, claimed_until = %s, next_poll_at = %s
FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, token)
WHERE s.id = v.id AND s.active AND s.next_poll_at <= %s
RETURNING s.id
"""


def _take_claims(
    chosen: list[tuple[int, uuid.UUID]], *, now: datetime, lease_until: datetime
) -> set[int]:
    """Set each chosen source's claim, conditional on its still being due; returns the ids
    claimed. One UPDATE on PostgreSQL (the rows are locked already), one per source elsewhere:
    on databases without row locks (SQLite) a racing dispatcher's claim makes it touch nothing.
    """
    if not chosen:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_SQL,
                [lease_until, lease_until, [i for i, _ in chosen], [t for _, t in chosen], now],
            )
            return {row[0] for row in cursor.fetchall()}
    return {
        source_id
        for source_id, token in chosen
        if Source.objects.filter(id=source_id, active=True, next_poll_at__lte=now).update(
            claim_token=token, claimed_until=lease_until, next_poll_at=lease_until
        )
    }


def claim_source_now(*, source_id: int) -> Claim | None:
    """Claim one source for an immediate poll ("poll now"), unless a poll is already running."""
    now = timezone.now()
    token = uuid.uuid4()
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    claimed = (
        Source.objects.filter(id=source_id)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claim_token=token, claimed_until=lease_until, next_poll_at=lease_until)
    )
    return Claim(source_id=source_id, token=str(token)) if claimed else None
