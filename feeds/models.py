"""Sources (what we poll), raw posts (what they said) and poll logs (how each poll went)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
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
        default=900, help_text="Seconds between polls when the source is healthy."
    )
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


class PollStatus(models.TextChoices):
    OK = "ok", "OK (new content)"
    NOT_MODIFIED = "not_modified", "Not modified (304)"
    HTTP_ERROR = "http_error", "HTTP error"
    TIMEOUT = "timeout", "Timed out"
    NETWORK_ERROR = "network_error", "Network error"
    TOO_LARGE = "too_large", "Response too large"
    NOT_A_FEED = "not_a_feed", "Not a feed"
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
    bytes_received = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # Source admin "recent polls": WHERE source_id = ? ORDER BY started_at DESC
            models.Index(fields=["source", "-started_at"], name="polllog_source_recent_idx"),
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
        ]

    def __str__(self) -> str:
        return self.title[:80] or self.external_id
