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
    """Claim every due source and queue poll → process → agents chains: as few as hold at most
    POLL_BATCH_SIZE sources each, of even sizes. Safe to run concurrently."""
    claims = services.claim_due_sources()
    for batch in _even_batches(claims, settings.POLL_BATCH_SIZE):
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


def _even_batches(claims: list[services.Claim], most: int) -> list[list[services.Claim]]:
    """`claims` cut into the fewest batches of at most `most`, whose sizes differ by one at
    most (21 claims by 20: 11 and 10, not 20 and a task of one)."""
    count = -(-len(claims) // most)
    size, extra = divmod(len(claims), count) if count else (0, 0)
    batches: list[list[services.Claim]] = []
    start = 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        batches.append(claims[start:end])
        start = end
    return batches


# ignore_result: the return value goes to the next link of the chain in its message; storing
# it in the result backend too (a write per task) served nobody.
@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll_sources(claims: list[list]) -> list[int]:
    """Poll many claimed sources; returns the raw post ids for the next link of the chain.

    Idempotent like `poll_source`: a claim already used or superseded is skipped.
    """
    return services.poll_sources(
        [services.Claim(source_id=int(source_id), token=str(token)) for source_id, token in claims]
    )


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll_source(source_id: int, token: str) -> list[int]:
    """Poll one claimed source; returns the new raw post ids for the next link of the chain.

    Idempotent: a redelivered or repeated call finds its claim gone and returns [].
    """
    return services.poll_source(source_id=source_id, token=token)
