"""Keep a feed filled when its sources change."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver

from processing.models import Feed


@receiver(m2m_changed, sender=Feed.sources.through)
def _backfill_on_new_sources(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any
) -> None:
    if action != "post_add" or not pk_set:
        return
    from processing.tasks import enqueue_feed_refresh

    # feed.sources.add(...) passes the feed; source.feeds.add(...) passes the feeds' ids.
    for feed_id in sorted(pk_set) if reverse else [instance.pk]:
        enqueue_feed_refresh(feed_id)


@receiver(pre_save, sender=Feed)
def _remember_description(sender: Any, instance: Feed, **_: Any) -> None:
    if instance.pk:
        old = Feed.objects.filter(pk=instance.pk).values_list("description", flat=True).first()
        instance._description_changed = old is not None and old != instance.description  # type: ignore[attr-defined]


@receiver(post_save, sender=Feed)
def _reevaluate_on_new_description(sender: Any, instance: Feed, created: bool, **_: Any) -> None:
    if not created and getattr(instance, "_description_changed", False):
        from processing.tasks import enqueue_feed_refresh

        enqueue_feed_refresh(instance.pk, reevaluate=True)
