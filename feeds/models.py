"""Sources (what we poll), raw posts (what they said) and poll logs (how each poll went)."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone

from feeds.validation import validate_source_url


class SourceKind(models.TextChoices):
    RSS = "rss", "RSS / Atom / JSON feed"
    TELEGRAM = "telegram", "Telegram channel"
    WEB = "web", "Web page"


class Source(models.Model):
    """One upstream, fetched once however many feeds subscribe to it."""

    kind = models.CharField(max_length=16, choices=SourceKind.choices, default=SourceKind.RSS)
    url = models.URLField(
        max_length=2000,
        help_text="Feed URL (or channel/page URL).",
        # The admin form and the API refuse the same URLs (see feeds.validation).
        validators=[validate_source_url],
    )
    title = models.CharField(max_length=300, blank=True)
    site_url = models.URLField(max_length=2000, blank=True)
    active = models.BooleanField(default=True)
    poll_interval = models.PositiveIntegerField(
        default=900,
        help_text=(
            "Seconds between polls when the source is healthy. With adaptive polling on, the "
            "starting point: the interval then follows the source's posting rate."
        ),
    )
    adaptive = models.BooleanField(
        default=True,
        help_text="Adapt the interval to how often the source publishes (within the bounds set "
        "by POLL_MIN_INTERVAL_SECONDS and POLL_MAX_INTERVAL_SECONDS).",
    )
    category = models.CharField(
        max_length=300, blank=True, help_text="Folder, e.g. from OPML ('Tech/AI')."
    )
    user_agent = models.CharField(
        max_length=300, blank=True, help_text="User-Agent for this source (blank: the default)."
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Per-kind options. Web pages: {"link_selector": "CSS", "content_selector": '
            '"CSS", "max_articles": 20}.'
        ),
    )
    # Lower-cased host of `url`, kept in step by save() and the services: the per-host cap.
    host = models.CharField(max_length=255, blank=True, editable=False, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Who added it through the API; counts against SOURCE_QUOTA_PER_USER. Null for sources
    # added by staff in the admin or by the demo.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="created_sources",
        editable=False,
    )

    # Scheduling state, written only by feeds.services.
    next_poll_at = models.DateTimeField(default=timezone.now)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    # Conditional GET validators from the last 200 response.
    # Interval in effect (seconds): adaptive from the posting rate, or stretched by backoff and
    # by what the server asked for (ttl, Cache-Control, Expires, Retry-After).
    current_interval = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Posting rhythm: when the last new item arrived and the mean gap between new items (EWMA).
    last_new_item_at = models.DateTimeField(null=True, blank=True, editable=False)
    mean_item_gap = models.FloatField(null=True, blank=True, editable=False)

    # Telegram: resolved once when the source is added (gateway) and the highest message id seen.
    tg_channel_id = models.BigIntegerField(null=True, blank=True, editable=False)
    tg_access_hash = models.BigIntegerField(null=True, blank=True, editable=False)
    cursor = models.BigIntegerField(default=0, editable=False)

    etag = models.CharField(max_length=500, blank=True, editable=False)
    last_modified = models.CharField(max_length=100, blank=True, editable=False)

    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status = models.CharField(max_length=32, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    error_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "url"], name="source_kind_url_uniq"),
        ]
        indexes = [
            # dispatch_due_sources: WHERE active AND next_poll_at <= now ORDER BY next_poll_at
            models.Index(fields=["next_poll_at"], condition=Q(active=True), name="source_due_idx"),
        ]

    def __str__(self) -> str:
        return self.title or self.url

    def save(self, *args: object, **kwargs: object) -> None:
        self.host = source_host(self.url)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "url" in update_fields:
            kwargs["update_fields"] = {*update_fields, "host"}  # type: ignore[misc]
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def telegram_username(self) -> str:
        """The channel name of a Telegram source URL (https://t.me/<name>)."""
        return telegram_username(self.url)

    @property
    def is_silent(self) -> bool:
        """No new item for much longer than the source's usual rhythm."""
        return _quiet_too_long(self.last_new_item_at, self.mean_item_gap, timezone.now())


def _quiet_too_long(
    last_new_item_at: datetime | None, mean_gap: float | None, now: datetime
) -> bool:
    if mean_gap is None or last_new_item_at is None:
        return False
    quiet = (now - last_new_item_at).total_seconds()
    return quiet > max(mean_gap * settings.SILENT_GAP_FACTOR, settings.SILENT_MIN_SECONDS)


def silent_source_ids(sources: QuerySet[Source], *, now: datetime | None = None) -> list[int]:
    """The ids of the silent ones among `sources` (`Source.is_silent`), reading only the
    candidates: a silent source has been quiet for at least SILENT_MIN_SECONDS."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=settings.SILENT_MIN_SECONDS)
    candidates = sources.filter(
        mean_item_gap__isnull=False, last_new_item_at__lt=quiet_since
    ).values_list("id", "last_new_item_at", "mean_item_gap")
    return [pk for pk, last, gap in candidates if _quiet_too_long(last, gap, now)]


def source_host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""


def telegram_username(url: str) -> str:
    """'https://t.me/durov', 't.me/s/durov/', '@durov' -> 'durov' ('' when there is none)."""
    value = url.strip()
    if value.startswith("@"):
        return value[1:]
    parts = [p for p in urlsplit(value if "//" in value else "//" + value).path.split("/") if p]
    if parts and parts[0] == "s":
        parts = parts[1:]
    return parts[0] if parts else ""


class PollStatus(models.TextChoices):
    OK = "ok", "OK (new content)"
    NOT_MODIFIED = "not_modified", "Not modified (304)"
    HTTP_ERROR = "http_error", "HTTP error"
    TIMEOUT = "timeout", "Timed out"
    NETWORK_ERROR = "network_error", "Network error"
    TOO_LARGE = "too_large", "Response too large"
    NOT_A_FEED = "not_a_feed", "Not a feed"
    BLOCKED = "blocked", "Blocked (address not allowed)"
    DEFERRED = "deferred", "Deferred (rate limited)"
    ERROR = "error", "Unexpected error"


class PollLog(models.Model):
    """The outcome of one poll: what the curator sees when a source misbehaves."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="polls")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=32, choices=PollStatus.choices, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    items_seen = models.PositiveIntegerField(default=0)
    items_new = models.PositiveIntegerField(default=0)
    items_updated = models.PositiveIntegerField(default=0)
    bytes_received = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_class = models.CharField(max_length=100, blank=True)
    # A network error seen while every source was failing: not counted against this source.
    outage = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # Source admin "recent polls": WHERE source_id = ? ORDER BY started_at DESC
            models.Index(fields=["source", "-started_at"], name="polllog_source_recent_idx"),
            # Outage detection and the dashboard: the last few minutes of polls, all sources.
            models.Index(fields=["-started_at"], name="polllog_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} @ {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"


class RawPost(models.Model):
    """An item as the source published it (sanitized), stored once per (source, external_id)."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="raw_posts")
    poll = models.ForeignKey(
        PollLog, on_delete=models.SET_NULL, null=True, blank=True, related_name="raw_posts"
    )
    external_id = models.CharField(max_length=512)
    url = models.URLField(max_length=2000, blank=True)
    title = models.TextField(blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    author = models.CharField(max_length=300, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)
    content_hash = models.CharField(max_length=64)
    # sha1 of the canonical link (tracking parameters stripped), '' without a link: the second
    # rung of the identity ladder, for feeds whose guids repeat or change.
    link_key = models.CharField(max_length=40, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Set in the same transaction that creates the raw post's Posts; null means "still owed".
    processed_at = models.DateTimeField(null=True, blank=True)
    process_claim = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="rawpost_source_external_id_uniq"
            ),
        ]
        indexes = [
            # sweep_unprocessed: WHERE processed_at IS NULL AND fetched_at < ?
            models.Index(
                fields=["fetched_at"],
                condition=Q(processed_at__isnull=True),
                name="rawpost_unprocessed_idx",
            ),
            # backfill_feed: WHERE source_id IN (...) ORDER BY fetched_at DESC
            models.Index(fields=["source", "-fetched_at"], name="rawpost_source_recent_idx"),
            models.Index(fields=["source", "link_key"], name="rawpost_source_link_idx"),
            models.Index(fields=["source", "content_hash"], name="rawpost_source_hash_idx"),
        ]

    def __str__(self) -> str:
        return self.title[:80] or self.external_id


class Tombstone(models.Model):
    """An item purged from storage: the identities it had, so it never comes back as new."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="tombstones")
    external_id = models.CharField(max_length=512)
    link_key = models.CharField(max_length=40, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    purged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="tombstone_source_external_id_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["source", "link_key"], name="tombstone_source_link_idx"),
            models.Index(fields=["source", "content_hash"], name="tombstone_source_hash_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id}"
