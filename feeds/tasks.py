"""Polling tasks. Each one parses its arguments and calls a service."""

from __future__ import annotations

from celery import chain, shared_task
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


@shared_task(ignore_result=True)
def dispatch_due_sources() -> int:
    """Claim every due source and queue one poll chain per source. Safe to run concurrently."""
    claims = services.claim_due_sources()
    for claim in claims:
        enqueue_poll(claim)
    return len(claims)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def poll_source(source_id: int, token: str) -> list[int]:
    """Poll one claimed source; returns the new raw post ids for the next link of the chain.

    Idempotent: a redelivered or repeated call finds its claim gone and returns [].
    """
    return services.poll_source(source_id=source_id, token=token)
