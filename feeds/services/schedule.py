"""When a source is polled next, and closing a poll: its posting rhythm, the adaptive interval,
backoff after errors (none during an outage of our own network), the PollLog finished and the
claim released."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.utils import timezone

from feeds.models import PollLog, PollStatus, Source
from feeds.parsing import ParsedEntry
from feeds.readers import ReadResult

if TYPE_CHECKING:
    from feeds.services.storing import Stored

logger = logging.getLogger(__name__)


_NETWORK_STATUSES = (PollStatus.NETWORK_ERROR, PollStatus.TIMEOUT)


def _rhythm(
    source: Source, *, new_items: int, read_entries: list[ParsedEntry], now: datetime
) -> dict[str, object]:
    """Update the source's posting rhythm: the mean gap between new items (EWMA)."""
    if not new_items:
        return {}
    fields: dict[str, object] = {"last_new_item_at": now}
    n = new_items
    if source.last_new_item_at is not None:
        gap = max((now - source.last_new_item_at).total_seconds() / n, 1.0)
    else:
        # First news from this source: its own timestamps tell its rhythm.
        # Feeds that stamp every item with the build time say nothing about it.
        dates = sorted({e.published_at for e in read_entries if e.published_at is not None})
        if len(dates) < 2:
            return fields
        gap = (dates[-1] - dates[0]).total_seconds() / (len(dates) - 1)
    previous = source.mean_item_gap
    fields["mean_item_gap"] = gap if previous is None else 0.3 * gap + 0.7 * previous
    return fields


def next_interval(
    source: Source,
    *,
    new_items: int,
    mean_gap: float | None,
    min_interval: int | None,
) -> int:
    """Seconds until the next poll after a successful one.

    Adaptive: half the mean gap between new items, so a new item waits on average a quarter
    of the source's rhythm; a poll that found nothing stretches the interval by a fifth (quiet
    sources drift towards the maximum, a new item pulls them back). Never sooner than what the
    server asked (RSS ttl, Cache-Control, Expires). Clamped to the configured bounds.
    """
    low, high = settings.POLL_MIN_INTERVAL_SECONDS, settings.POLL_MAX_INTERVAL_SECONDS
    current = source.current_interval or source.poll_interval
    if not source.adaptive:
        target = float(source.poll_interval)
    elif mean_gap is None:
        target = float(current if new_items else current * 1.2)
    elif new_items:
        target = mean_gap / 2
    else:
        target = max(mean_gap / 2, current * 1.2)
    if source.adaptive:
        target = min(max(target, low), high)
    if min_interval:
        target = max(target, min(min_interval, high))
    return max(int(target), 1)


def _is_outage(source_id: int, now: datetime) -> bool:
    """Is every source failing on the network right now (our network, not theirs)?"""
    since = now - timedelta(seconds=settings.OUTAGE_WINDOW_SECONDS)
    recent = PollLog.objects.filter(started_at__gte=since)
    if recent.filter(status__in=(PollStatus.OK, PollStatus.NOT_MODIFIED)).exists():
        return False
    failing = (
        recent.filter(status__in=_NETWORK_STATUSES)
        .exclude(source_id=source_id)
        .values("source_id")
        .distinct()[: settings.OUTAGE_MIN_SOURCES]
        .count()
    )
    return failing + 1 >= settings.OUTAGE_MIN_SOURCES


def _finish(
    source: Source,
    token: str,
    log: PollLog,
    started: float,
    read: ReadResult,
    stored: Stored,
    *,
    retry_after: int | None = None,
) -> None:
    fields = _close_log(
        source, log, started, read, new_items=len(stored.new_ids), retry_after=retry_after
    )
    log.save()
    _update_claimed(source.id, token, fields)
    _log_poll(source, log)


def _update_claimed(source_id: int, token: str, fields: dict[str, object]) -> None:
    """The source's new state, written only while the poll still holds its claim."""
    if not Source.objects.filter(id=source_id, claim_token=token).update(**fields):
        _claim_expired(source_id)


def _claim_expired(source_id: int) -> None:
    logger.warning("poll of source %s finished after its claim expired", source_id)


def _close_log(
    source: Source,
    log: PollLog,
    started: float,
    read: ReadResult,
    *,
    new_items: int,
    retry_after: int | None = None,
) -> dict[str, object]:
    """Finish `log` (not saved) and return the source's new scheduling state."""
    now = timezone.now()
    log.finished_at = now
    log.duration_ms = int((time.monotonic() - started) * 1000)
    failed = log.status not in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    if failed and log.status in _NETWORK_STATUSES and _is_outage(source.id, now):
        log.outage = True
    fields: dict[str, object] = {
        "claim_token": None,
        "claimed_until": None,
        "last_polled_at": now,
        "last_status": log.status,
    }
    current = source.current_interval or source.poll_interval
    if failed:
        fields["last_error"] = log.error
        if log.outage:
            # Not the source's fault: retry at its usual pace, count nothing against it.
            delay = float(current)
        else:
            errors = source.error_count + 1
            fields["error_count"] = errors
            # Doubling per consecutive error, capped; reset by the next success.
            delay = min(current * 2 ** min(errors, 16), settings.POLL_MAX_INTERVAL_SECONDS)
            delay = max(delay, current)
        if retry_after:
            delay = max(delay, min(retry_after, settings.POLL_MAX_INTERVAL_SECONDS))
    else:
        fields.update(last_error="", error_count=0, last_success_at=now)
        if read.etag is not None:
            fields["etag"] = read.etag[:500]
        if read.last_modified is not None:
            fields["last_modified"] = read.last_modified[:100]
        if read.title and not source.title:
            fields["title"] = read.title[:300]
        if read.site_url and not source.site_url:
            fields["site_url"] = read.site_url
        rhythm = _rhythm(source, new_items=new_items, read_entries=read.entries, now=now)
        fields.update(rhythm)
        interval = next_interval(
            source,
            new_items=new_items,
            mean_gap=rhythm.get("mean_item_gap", source.mean_item_gap),  # type: ignore[arg-type]
            min_interval=read.min_interval,
        )
        fields["current_interval"] = interval
        delay = float(interval)
    # Up to 10% jitter so sources added together do not stay in lockstep.
    fields["next_poll_at"] = now + timedelta(seconds=delay * (1 + random.random() * 0.1))
    return fields


def _log_poll(source: Source, log: PollLog) -> None:
    failed = log.status not in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    logger.info(
        "polled source %s: %s http=%s seen=%s new=%s edited=%s in %s ms%s",
        source.id,
        log.status,
        log.http_status,
        log.items_seen,
        log.items_new,
        log.items_updated,
        log.duration_ms,
        f" error={log.error}" + (" (outage)" if log.outage else "") if failed else "",
        extra={"source_id": source.id},  # batched 304s are logged outside _record's context
    )


_FINISH_SQL = """
UPDATE feeds_source AS s SET
    claim_token = NULL, claimed_until = NULL, last_status = v.status, last_error = '',
    error_count = 0, last_polled_at = v.now, last_success_at = v.now,
    etag = COALESCE(v.etag, s.etag), last_modified = COALESCE(v.last_modified, s.last_modified),
    title = COALESCE(v.title, s.title), site_url = COALESCE(v.site_url, s.site_url),
    last_new_item_at = COALESCE(v.last_new_item_at, s.last_new_item_at),
    mean_item_gap = COALESCE(v.mean_item_gap, s.mean_item_gap),
    current_interval = v.current_interval, next_poll_at = v.next_poll_at
FROM (VALUES {rows}) AS v(
    id, token, status, now, etag, last_modified, title, site_url, last_new_item_at,
    mean_item_gap, current_interval, next_poll_at
)
WHERE s.id = v.id AND s.claim_token = v.token
RETURNING s.id
"""
_FINISH_ROW = (
    "(%s::bigint, %s::uuid, %s::text, %s::timestamptz, %s::text, %s::text, %s::text, %s::text,"
    " %s::timestamptz, %s::double precision, %s::integer, %s::timestamptz)"
)
# Columns `_close_log` sets only sometimes (NULL in the VALUES: keep the stored one).
_FINISH_OPTIONAL = ("etag", "last_modified", "title", "site_url", "last_new_item_at")
_FINISH_ROWS_PER_STATEMENT = 1000


def _finish_sources(finished: list[tuple[Source, str, dict[str, object]]]) -> None:
    """`_finish`'s source update for many successful polls (each with the fields `_close_log`
    returned): one UPDATE on PostgreSQL, each row still conditional on its claim."""
    if connection.vendor != "postgresql":
        for source, token, fields in finished:
            _update_claimed(source.id, token, fields)
        return
    updated: set[int] = set()
    for start in range(0, len(finished), _FINISH_ROWS_PER_STATEMENT):
        chunk = finished[start : start + _FINISH_ROWS_PER_STATEMENT]
        params: list[object] = []
        for source, token, fields in chunk:
            params += [source.id, token, fields["last_status"], fields["last_polled_at"]]
            params += [fields.get(name) for name in _FINISH_OPTIONAL]
            params += [fields.get("mean_item_gap"), fields["current_interval"]]
            params.append(fields["next_poll_at"])
        sql = _FINISH_SQL.format(rows=", ".join([_FINISH_ROW] * len(chunk)))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            updated.update(row[0] for row in cursor.fetchall())
    for source, _, _ in finished:
        if source.id not in updated:
            _claim_expired(source.id)
