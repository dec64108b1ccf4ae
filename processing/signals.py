"""Keep a feed filled when its sources change."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from processing.models import Feed


@receiver(m2m_changed, sender=Feed.sources.through)
def _backfill_on_new_sources(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any
) -> None:
    if action != "post_add" or not pk_set:
        return
    from processing.tasks import backfill_feed

    # feed.sources.add(...) passes the feed; source.feeds.add(...) passes the feeds' ids.
    for feed_id in sorted(pk_set) if reverse else [instance.pk]:
        backfill_feed.delay_on_commit(feed_id)
