"""The one place that names Channels groups. Names come from integer ids only."""

from __future__ import annotations


def feed_group(feed_id: int) -> str:
    return f"feed.{int(feed_id)}"
