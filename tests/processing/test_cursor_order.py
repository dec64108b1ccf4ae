"""Within a feed, posts commit in id order (the WebSocket cursor relies on it)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed, Post

pytestmark = pytest.mark.django_db(transaction=True)


def _raw(source: Source, n: int) -> RawPost:
    return RawPost.objects.create(
        source=source, external_id=f"c{n}", title=f"story {n}", content_hash=f"{n:064d}"
    )


def test_it_makes_a_second_writer_of_the_same_feed_wait_for_the_first_to_commit(owner):
    source = Source.objects.create(url="http://feeds.invalid/order.xml")
    feed = Feed.objects.create(owner=owner, name="Ordered", summaries=False, tags=False)
    feed.sources.add(source)
    first_raw, second_raw = _raw(source, 1), _raw(source, 2)
    first_inserted, release_first = threading.Event(), threading.Event()
    second_done = threading.Event()

    def first() -> None:
        with transaction.atomic():
            services.process_raw_posts(raw_post_ids=[first_raw.id])
            first_inserted.set()
            release_first.wait(10)
        connection.close()

    def second() -> None:
        first_inserted.wait(10)
        services.process_raw_posts(raw_post_ids=[second_raw.id])
        second_done.set()
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    # While the first transaction is open, the second cannot insert into the same feed.
    blocked = not second_done.wait(1.0)
    release_first.set()
    for thread in threads:
        thread.join(10)

    assert blocked
    ids = dict(Post.objects.filter(feed=feed).values_list("raw_post_id", "id"))
    assert ids[first_raw.id] < ids[second_raw.id]
