"""Processing tasks. Each one parses its arguments and calls a service.

Canvas: poll_source | process_raw_posts | decide_candidates (feeds.tasks.enqueue_poll); the
last link runs on the `agents` queue. Every task is idempotent.
"""

from __future__ import annotations

from celery import chain, shared_task
from django.conf import settings
from django.db import transaction

from processing import decisions, services
from processing.stories import prune_story_keys


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_raw_posts(raw_post_ids: list[int]) -> list[int]:
    """Stories and feed rules for new raw posts; returns candidate ids for the agents step."""
    return services.stage_raw_posts(raw_post_ids=raw_post_ids).candidate_ids


# LLM calls are slow: a longer limit than the default, still far below the visibility timeout.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=600,
    time_limit=660,
)
def decide_candidates(candidate_ids: list[int]) -> list[int]:
    """Run the feeds' agents on candidates and save the posts they keep. Idempotent."""
    return decisions.decide_candidates(candidate_ids=candidate_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def backfill_feed(feed_id: int) -> list[int]:
    """Candidates (or posts) from a new or changed feed's recent raw posts. Idempotent."""
    return services.stage_backfill(feed_id=feed_id).candidate_ids


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True, soft_time_limit=600,
             time_limit=660)  # fmt: skip
def reevaluate_feed(feed_id: int) -> list[int]:
    """Re-judge a feed's recent posts after its description changed. Idempotent."""
    return decisions.reevaluate_feed(feed_id=feed_id)


def enqueue_feed_refresh(feed_id: int, *, reevaluate: bool = False) -> None:
    """After commit: fill (or re-judge) a feed, then decide its candidates."""
    first = reevaluate_feed.si(feed_id) if reevaluate else backfill_feed.si(feed_id)
    transaction.on_commit(chain(first, decide_candidates.s()).apply_async)


@shared_task(ignore_result=True)
def sweep_unprocessed() -> int:
    """Re-queue work that was lost (killed worker, flushed broker): raw posts not processed and
    candidates not decided in time. Also drops story keys too old to match."""
    ids = services.unprocessed_raw_post_ids(older_than_seconds=settings.PROCESS_RETRY_AFTER_SECONDS)
    if ids:
        chain(process_raw_posts.s(ids), decide_candidates.s()).apply_async()
    candidates = services.stale_candidate_ids(
        older_than_seconds=settings.PROCESS_RETRY_AFTER_SECONDS
    )
    if candidates:
        decide_candidates.delay(candidates)
    prune_story_keys()
    return len(ids) + len(candidates)
