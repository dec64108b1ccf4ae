"""Adding and changing sources: URL validation, feed autodiscovery, the per-user quota."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from feeds.fetcher import FetchError
from feeds.models import Source, SourceKind, source_host
from feeds.validation import normalize_source_url, validate_source_url

logger = logging.getLogger(__name__)


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


def discover_feed_url(url: str) -> str:
    """The feed to add for `url`: the URL itself when it is a feed (or already a source, or
    cannot be fetched right now: its polls will tell why), else the first feed the page links
    to. Raises ValidationError for a page that links no feed."""
    from feeds.discovery import resolve_feed_url  # fetches; imported where it is used

    validate_source_url(url)
    if Source.objects.filter(kind=SourceKind.RSS, url=normalize_source_url(url)).exists():
        return url
    try:
        found = resolve_feed_url(url)
    except FetchError:
        return url
    if found is None:
        raise ValidationError(
            "No RSS, Atom or JSON feed found at this URL, and the page links to none. "
            "Add it as a web page source (kind 'web') to follow its articles.",
            code="no_feed",
        )
    if found != url:
        logger.info("feed autodiscovery: %s -> %s", url, found)
    return found


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
            host=source_host(new_url or source.url),
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
