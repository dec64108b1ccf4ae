from __future__ import annotations

import pytest

from feeds import services
from feeds.models import PollLog, PollStatus, RawPost, Source
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def _claimed(source: Source) -> str:
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    return claim.token


def test_it_stores_new_items_once_and_reports_only_new_ids(feed_server):
    url = feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two")))
    source = Source.objects.create(url=url)

    first = services.poll_source(source_id=source.id, token=_claimed(source))
    feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two"), ("g3", "Three")))
    second = services.poll_source(source_id=source.id, token=_claimed(source))

    assert len(first) == 2
    assert RawPost.objects.get(id=second[0]).external_id == "g3"
    assert len(second) == 1
    assert RawPost.objects.filter(source=source).count() == 3
