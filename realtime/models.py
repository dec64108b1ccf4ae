"""The transactional outbox (events waiting for JetStream), the ingest inbox and dead letters."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from realtime.events import new_event_id


class OutboxEvent(models.Model):
    """One event, written in the transaction that created the row it announces.

    `id` is the event_id (a time-ordered UUIDv7) and is sent as Nats-Msg-Id; the relay publishes
    the events of one `ordering_key` in id order and sets `published_at` after JetStream's ack.
    """

    id = models.UUIDField(primary_key=True, default=new_event_id, editable=False)
    subject = models.CharField(max_length=100)
    payload = models.JSONField()
    ordering_key = models.CharField(
        max_length=100, help_text="Events with the same key are published in order (source id)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Set only after JetStream rejected this very event; its key waits until then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Relay batch: WHERE published_at IS NULL ORDER BY id LIMIT n; also outbox_stats.
            models.Index(
                fields=["id"], condition=Q(published_at__isnull=True), name="outbox_pending_idx"
            ),
            # Relay batch: keys held back by a rejected event
            # (WHERE published_at IS NULL AND next_attempt_at IS NOT NULL).
            models.Index(
                fields=["ordering_key"],
                condition=Q(published_at__isnull=True, next_attempt_at__isnull=False),
                name="outbox_backoff_idx",
            ),
            # prune_published: WHERE published_at < cutoff
            models.Index(
                fields=["published_at"],
                condition=Q(published_at__isnull=False),
                name="outbox_published_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.id}"


class IngestedEvent(models.Model):
    """The inbox: every raw_posts.created event from another publisher that we handled."""

    event_id = models.UUIDField(primary_key=True)
    raw_post = models.ForeignKey(
        "feeds.RawPost", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.BooleanField(help_text="False when the raw post was already stored.")
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return str(self.event_id)


class DeadLetter(models.Model):
    """A message the ingest consumer gave up on: invalid, or failing after N deliveries."""

    stream = models.CharField(max_length=100)
    stream_seq = models.PositiveBigIntegerField()
    subject = models.CharField(max_length=200)
    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=100, blank=True)
    num_delivered = models.PositiveIntegerField()
    headers = models.JSONField(default=dict, blank=True)
    data = models.TextField(blank=True, help_text="The message body (cut at 64 KiB).")
    error = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A redelivery of the same message after the record was written adds nothing.
            models.UniqueConstraint(
                fields=["stream", "stream_seq"], name="deadletter_stream_seq_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream}#{self.stream_seq} {self.subject}"
