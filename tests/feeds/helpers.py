"""Helpers shared by the feeds tests."""

from __future__ import annotations

from feeds import services
from feeds.models import Source


def poll(source: Source) -> list[int]:
    """Claim `source` now and poll it; the source is refreshed from the database after."""
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    ids = services.poll_source(source_id=source.id, token=claim.token)
    source.refresh_from_db()
    return ids
