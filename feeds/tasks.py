"""Polling tasks. Each one parses its arguments and calls a service."""

from __future__ import annotations

from celery import chain, shared_task
from django.conf import settings
from django.db import transaction

from feeds import services
from processing.tasks import decide_candidates, process_raw_posts


def enqueue_poll(claim: services.Claim) -> None:
    """Queue poll → process → agents as one Celery chain, after the claim is committed."""
    signature = chain(
        poll_source.si(claim.source_id, claim.token),
        process_raw_posts.s(),
        decide_candidates.s(),
    )
    transaction.on_commit(signature.apply_async)


def enqueue_processing(raw_post_ids: list[int]) -> None:
    """Queue process → agents for raw posts stored outside a poll chain (the Telegram gateway,
    edits), after the transaction that stored them commits."""
    ids = sorted(set(raw_post_ids))
    if ids:
        signature = chain(process_raw_posts.s(ids), decide_candidates.s())
        transaction.on_commit(signature.apply_async)


@shared_task(ignore_result=True)
def purge_raw_posts() -> int:
    """Drop old raw posts no feed kept (tombstoned, so they never come back as new)."""
    return services.purge_raw_posts()


@shared_task(ignore_result=True)
def dispatch_due_sources() -> int:
    """Claim every due source and queue poll → process → agents chains, POLL_BATCH_SIZE sources
    per chain. Safe to run concurrently."""
    claims = services.claim_due_sources()
    size = settings.POLL_BATCH_SIZE
    for start in range(0, len(claims), size):
        batch = claims[start : start + size]
        if len(batch) == 1:
            enqueue_poll(batch[0])
            continue
        signature = chain(
            poll_sources.si([[claim.source_id, claim.token] for claim in batch]),
            process_raw_posts.s(),
            decide_candidates.s(),
        )
        transaction.on_commit(signature.apply_async)
    return len(claims)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def poll_sources(claims: list[list]) -> list[int]:
    """Poll many claimed sources; returns the raw post ids for the next link of the chain.

    Idempotent like `poll_source`: a claim already used or superseded is skipped.
    """
    return services.poll_sources(
        [services.Claim(source_id=int(source_id), token=str(token)) for source_id, token in claims]
    )


@shared_task(acks_late=True, reject_on_worker_lost=True)
def poll_source(source_id: int, token: str) -> list[int]:
    """Poll one claimed source; returns the new raw post ids for the next link of the chain.

    Idempotent: a redelivered or repeated call finds its claim gone and returns [].
    """
    return services.poll_source(source_id=source_id, token=token)
