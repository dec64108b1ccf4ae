"""Processing tasks. Each one parses its arguments and calls a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from processing import services


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_raw_posts(raw_post_ids: list[int]) -> list[int]:
    """Apply every subscribing feed's rules to new raw posts and save posts. Idempotent."""
    return services.process_raw_posts(raw_post_ids=raw_post_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def backfill_feed(feed_id: int) -> list[int]:
    """Fill a new or changed feed with its sources' recent raw posts. Idempotent."""
    return services.backfill_feed(feed_id=feed_id)


@shared_task(ignore_result=True)
def sweep_unprocessed() -> int:
    """Re-queue raw posts whose processing was lost (killed worker, flushed broker)."""
    ids = services.unprocessed_raw_post_ids(older_than_seconds=settings.PROCESS_RETRY_AFTER_SECONDS)
    if ids:
        process_raw_posts.delay(ids)
    return len(ids)
