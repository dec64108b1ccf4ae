"""Writes for sources: claiming due polls, polling, storing raw posts.

Scheduling contract: a poll runs only under a claim (`Source.claim_token`), taken by one
conditional UPDATE, so two dispatcher ticks or two workers never poll one source at once. A claim
expires after POLL_LEASE_SECONDS (longer than the task's hard time limit), so a poll lost with a
killed worker or a flushed broker is simply dispatched again.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from feeds.fetcher import FetchError, fetch
from feeds.models import PollLog, PollStatus, RawPost, Source, SourceKind
from feeds.parsing import NotAFeed, ParsedEntry, parse_feed
from feeds.validation import normalize_source_url, validate_source_url
from realtime import outbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    source_id: int
    token: str


def claim_due_sources(*, now: datetime | None = None, limit: int | None = None) -> list[Claim]:
    """Claim up to `limit` active sources whose next poll is due, oldest first.

    The rows are locked with SKIP LOCKED (PostgreSQL) and moved past the lease in the same
    transaction, so a concurrent dispatcher neither waits on nor sees them.
    """
    now = now or timezone.now()
    limit = limit or settings.POLL_DISPATCH_BATCH
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    claims: list[Claim] = []
    with transaction.atomic():
        due_ids = list(
            Source.objects.select_for_update(skip_locked=True)
            .filter(active=True, next_poll_at__lte=now)
            .order_by("next_poll_at")
            .values_list("id", flat=True)[:limit]
        )
        for source_id in due_ids:
            token = uuid.uuid4()
            # Conditional on still being due: on databases without row locks (SQLite) a racing
            # dispatcher's claim makes this update touch nothing.
            claimed = Source.objects.filter(
                id=source_id, active=True, next_poll_at__lte=now
            ).update(claim_token=token, claimed_until=lease_until, next_poll_at=lease_until)
            if claimed:
                claims.append(Claim(source_id=source_id, token=str(token)))
    return claims


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


def poll_source(*, source_id: int, token: str) -> list[int]:
    """Fetch and store one source under its claim; return the ids of raw posts it created.

    Idempotent: a call whose claim is gone (already finished, or superseded after the lease
    expired) does nothing and returns []. Errors are recorded on the source and in a PollLog;
    the next poll is then scheduled later (backoff), never disabled.
    """
    source = Source.objects.filter(id=source_id, claim_token=token).first()
    if source is None:
        logger.info("poll of source %s skipped: claim %s no longer held", source_id, token)
        return []
    started = time.monotonic()
    log = PollLog(source=source, started_at=timezone.now())
    new_ids: list[int] = []
    try:
        result = fetch(source.url, etag=source.etag, last_modified=source.last_modified)
        log.http_status = result.status_code
        log.bytes_received = len(result.body)
        if result.not_modified:
            log.status = PollStatus.NOT_MODIFIED
            _finish(source, token, log, started, etag=result.etag, modified=result.last_modified)
            return []
        parsed = parse_feed(result.body, content_type=result.content_type, base_url=result.url)
        with transaction.atomic():
            log.status = PollStatus.OK
            log.items_seen = len(parsed.entries)
            log.save()
            new_ids = _store_entries(source, log, parsed.entries)
            log.items_new = len(new_ids)
            _finish(
                source,
                token,
                log,
                started,
                etag=result.etag,
                modified=result.last_modified,
                title=parsed.title,
                site_url=parsed.site_url,
            )
    except (FetchError, NotAFeed) as exc:
        log.status = exc.status
        log.http_status = getattr(exc, "http_status", None) or log.http_status
        log.error = str(exc)
        _finish(source, token, log, started)
    except Exception as exc:
        logger.exception("poll of source %s failed unexpectedly", source_id)
        log.status = PollStatus.ERROR
        log.error = f"{type(exc).__name__}: {exc}"[:2000]
        _finish(source, token, log, started)
    return new_ids


def _store_entries(source: Source, log: PollLog, entries: list[ParsedEntry]) -> list[int]:
    """Insert entries not stored yet; return exactly the ids this call created."""
    if not entries:
        return []
    now = timezone.now()
    RawPost.objects.bulk_create(
        [
            RawPost(
                source=source,
                poll=log,
                external_id=entry.external_id,
                url=entry.url,
                title=entry.title,
                text=entry.text,
                html=entry.html,
                author=entry.author,
                published_at=entry.published_at,
                fetched_at=now,
                content_hash=entry.content_hash,
            )
            for entry in entries
        ],
        ignore_conflicts=True,  # (source, external_id) already stored: keep the first copy
    )
    # Rows that already existed keep the poll that first stored them, so this is exactly ours.
    created = list(RawPost.objects.filter(poll=log).select_related("source").order_by("id"))
    outbox.record_raw_posts_created(created)  # same transaction as the rows (poll_source)
    return [raw.id for raw in created]


def _finish(
    source: Source,
    token: str,
    log: PollLog,
    started: float,
    *,
    etag: str | None = None,
    modified: str | None = None,
    title: str = "",
    site_url: str = "",
) -> None:
    now = timezone.now()
    log.finished_at = now
    log.save()
    failed = log.status not in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    fields: dict[str, object] = {
        "claim_token": None,
        "claimed_until": None,
        "last_polled_at": now,
        "last_status": log.status,
    }
    if failed:
        errors = source.error_count + 1
        fields.update(last_error=log.error, error_count=errors)
        delay = min(source.poll_interval * (errors + 1), settings.POLL_MAX_INTERVAL_SECONDS)
        delay = max(delay, source.poll_interval)
    else:
        fields.update(last_error="", error_count=0, last_success_at=now)
        if etag is not None:
            fields["etag"] = etag[:500]
        if modified is not None:
            fields["last_modified"] = modified[:100]
        if title and not source.title:
            fields["title"] = title
        if site_url and not source.site_url:
            fields["site_url"] = site_url
        delay = source.poll_interval
    # Up to 10% jitter so sources added together do not stay in lockstep.
    fields["next_poll_at"] = now + timedelta(seconds=delay * (1 + random.random() * 0.1))
    updated = Source.objects.filter(id=source.id, claim_token=token).update(**fields)
    if not updated:
        logger.warning("poll of source %s finished after its claim expired", source.id)
    logger.info(
        "polled source %s: %s http=%s seen=%s new=%s in %.0f ms%s",
        source.id,
        log.status,
        log.http_status,
        log.items_seen,
        log.items_new,
        (time.monotonic() - started) * 1000,
        f" error={log.error}" if failed else "",
    )


class QuotaExceeded(Exception):
    """The user already has as many objects of a kind as their quota allows."""


class SourceExists(Exception):
    """Another source already has this kind and URL."""


def lock_user(user: AbstractBaseUser) -> None:
    """Lock the user's row until the transaction ends: serializes one user's quota checks, so
    concurrent requests cannot all see "one left" and all insert."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))


def create_source(
    *,
    user: AbstractBaseUser,
    url: str,
    kind: str = SourceKind.RSS,
    title: str = "",
    poll_interval: int | None = None,
    active: bool = True,
) -> tuple[Source, bool]:
    """Return the source for (kind, url), creating it unless it exists; True if created here.

    Idempotent by URL: a URL already stored (compared after `normalize_source_url`) returns that
    source unchanged and costs nothing against the quota. A user who is not staff may have
    created at most SOURCE_QUOTA_PER_USER sources; the count and the insert run under a lock on
    the user's row, so concurrent requests cannot overshoot it. A concurrent insert of the same
    URL by someone else is absorbed by the unique constraint (the other row is returned).
    Raises ValidationError for a URL `validate_source_url` refuses, QuotaExceeded at the quota.
    The new source is due at once, so the next dispatcher tick polls it.
    """
    validate_source_url(url)
    url = normalize_source_url(url)
    existing = Source.objects.filter(kind=kind, url=url).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        if not getattr(user, "is_staff", False):
            lock_user(user)
            if Source.objects.filter(created_by=user).count() >= settings.SOURCE_QUOTA_PER_USER:
                raise QuotaExceeded(
                    f"You may add at most {settings.SOURCE_QUOTA_PER_USER} sources."
                )
        source, created = Source.objects.get_or_create(
            kind=kind,
            url=url,
            defaults={
                "title": title,
                "active": active,
                "poll_interval": poll_interval or settings.POLL_DEFAULT_INTERVAL_SECONDS,
                "created_by": user,
                "next_poll_at": timezone.now(),
            },
        )
    if created:
        logger.info("source %s added by user %s: %s", source.id, user.pk, url)
    return source, created


def update_source(
    *,
    source: Source,
    title: str | None = None,
    url: str | None = None,
    kind: str | None = None,
    active: bool | None = None,
    poll_interval: int | None = None,
) -> Source:
    """Change the given fields (None: keep). A new URL or kind is validated and normalized,
    forgets the old URL's conditional-GET validators and makes the source due at once.
    Raises ValidationError for a refused URL, SourceExists if it collides with another source.
    Who may change what is the caller's decision (the API lets only staff change the URL)."""
    fields: dict[str, object] = {}
    if title is not None:
        fields["title"] = title
    if active is not None:
        fields["active"] = active
    if poll_interval is not None:
        fields["poll_interval"] = poll_interval
    if url is not None:
        validate_source_url(url)
        url = normalize_source_url(url)
    new_url = url if url is not None and url != source.url else None
    new_kind = kind if kind is not None and kind != source.kind else None
    if new_url is not None or new_kind is not None:
        fields.update(
            url=new_url or source.url,
            kind=new_kind or source.kind,
            etag="",
            last_modified="",
            next_poll_at=timezone.now(),
        )
    if not fields:
        return source
    try:
        with transaction.atomic():
            Source.objects.filter(id=source.id).update(**fields)
    except IntegrityError as exc:
        raise SourceExists("Another source already has this URL.") from exc
    source.refresh_from_db()
    return source
