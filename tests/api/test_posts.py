"""A feed's posts: stable cursor pages, bounded sizes, filters, search, and no N+1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.factories import FeedFactory, PostFactory, RawPostFactory, SourceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def feed(alice):
    return FeedFactory(owner=alice)


def _post(feed, **fields):
    raw_fields = {k: fields.pop(k) for k in ("source",) if k in fields}
    return PostFactory(feed=feed, raw_post=RawPostFactory(**raw_fields), **fields)


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def _cursor(url: str | None) -> str | None:
    return parse_qs(urlsplit(url).query)["cursor"][0] if url else None


def test_it_shows_a_post_with_its_source_and_raw_url(feed, alice_client):
    source = SourceFactory(title="Wire", url="https://wire.example/rss")
    post = PostFactory(
        feed=feed,
        raw_post=RawPostFactory(source=source, url="https://wire.example/a?utm=1"),
        url="https://wire.example/a",
        tags=["eu", "ai"],
        relevance=0.75,
        summary="A summary.",
    )

    body = alice_client.get(f"/api/feeds/{feed.id}/posts/{post.id}/").json()

    assert body == {
        "id": post.id,
        "feed_id": feed.id,
        "raw_post_id": post.raw_post_id,
        "story_id": None,
        "title": post.title,
        "summary": "A summary.",
        "url": "https://wire.example/a",
        "raw_url": "https://wire.example/a?utm=1",
        "tags": ["eu", "ai"],
        "relevance": 0.75,
        "relevance_reason": "",
        "hidden": False,
        "hidden_reason": "",
        "published_at": "2026-11-25T10:00:00Z",
        "created_at": body["created_at"],
        "source": {"id": source.id, "kind": "rss", "title": "Wire", "url": source.url},
    }


def test_it_lists_posts_in_two_queries_however_many_sources(
    feed, alice_client, django_assert_num_queries
):
    for _ in range(20):
        _post(feed, source=SourceFactory())

    # The feed's ownership check, then one page of posts joined with raw posts and sources.
    with django_assert_num_queries(2):
        response = alice_client.get(
            f"/api/feeds/{feed.id}/posts/?tag=x&search=item&since=2026-01-01T00:00:00Z"
        )
    assert response.status_code == 200

    with django_assert_num_queries(2):
        response = alice_client.get(f"/api/feeds/{feed.id}/posts/")
    assert len(response.json()["results"]) == 20
    assert all(item["source"]["title"] for item in response.json()["results"])


def test_it_pages_without_duplicates_or_gaps_while_posts_arrive(feed, alice_client):
    older = [_post(feed) for _ in range(5)]
    expected = [p.id for p in reversed(older)]
    seen: list[int] = []

    url = f"/api/feeds/{feed.id}/posts/?page_size=2"
    while url:
        response = alice_client.get(url)
        seen += _ids(response)
        _post(feed)  # a new post arrives between every two pages
        url = response.json()["next"]

    assert seen == expected
    # The new ones are ahead of the first page, where a client polling for news finds them.
    assert len(_ids(alice_client.get(f"/api/feeds/{feed.id}/posts/"))) == 5 + 3


def test_it_bounds_the_page_size(feed, alice_client):
    for _ in range(3):
        _post(feed)

    assert len(_ids(alice_client.get(f"/api/feeds/{feed.id}/posts/?page_size=1"))) == 1
    assert len(_ids(alice_client.get(f"/api/feeds/{feed.id}/posts/?page_size=-1"))) == 3
    huge = alice_client.get(f"/api/feeds/{feed.id}/posts/?page_size=1000000")
    assert len(_ids(huge)) == 3
    assert alice_client.get(f"/api/feeds/{feed.id}/posts/?cursor=garbage").status_code == 404


def test_it_caps_the_page_size_at_the_maximum(feed, alice_client):
    raws = RawPostFactory.create_batch(205)
    PostFactory._meta.model.objects.bulk_create(
        [PostFactory.build(feed=feed, raw_post=raw) for raw in raws]
    )

    response = alice_client.get(f"/api/feeds/{feed.id}/posts/?page_size=1000")

    assert len(_ids(response)) == 200
    assert len(_ids(alice_client.get(f"/api/feeds/{feed.id}/posts/"))) == 50


def test_it_filters_by_tag(feed, alice_client):
    tagged = _post(feed, tags=["ai", "eu"])
    _post(feed, tags=["sports"])
    _post(feed, tags=["aix"])

    assert _ids(alice_client.get(f"/api/feeds/{feed.id}/posts/?tag=ai")) == [tagged.id]


def test_it_filters_by_date_ranges(feed, alice_client):
    old = _post(feed, created_at=T0, published_at=T0 - timedelta(days=3))
    mid = _post(feed, created_at=T0 + timedelta(days=1), published_at=T0 - timedelta(days=1))
    new = _post(feed, created_at=T0 + timedelta(days=2), published_at=None)
    base = f"/api/feeds/{feed.id}/posts/"

    assert _ids(alice_client.get(base + "?since=2026-11-21T12:00:00Z")) == [new.id, mid.id]
    assert _ids(alice_client.get(base + "?until=2026-11-21T12:00:00Z")) == [old.id]
    assert _ids(alice_client.get(base + "?published_since=2026-11-18T00:00:00Z")) == [mid.id]
    assert _ids(alice_client.get(base + "?published_until=2026-11-18T00:00:00Z")) == [old.id]
    assert alice_client.get(base + "?since=yesterday").status_code == 400


def test_it_filters_by_minimum_relevance(feed, alice_client):
    high = _post(feed, relevance=0.9)
    _post(feed, relevance=0.2)
    _post(feed, relevance=None)

    assert _ids(alice_client.get(f"/api/feeds/{feed.id}/posts/?min_relevance=0.5")) == [high.id]
    assert alice_client.get(f"/api/feeds/{feed.id}/posts/?min_relevance=high").status_code == 400


def test_it_searches_title_and_summary_as_full_text(feed, alice_client):
    in_title = _post(feed, title="Parliament adopts the AI Act", summary="")
    in_summary = _post(feed, title="Brussels news", summary="The act on artificial intelligence")
    _post(feed, title="Football results", summary="Nothing about it")
    base = f"/api/feeds/{feed.id}/posts/"

    assert _ids(alice_client.get(base + "?search=act")) == [in_summary.id, in_title.id]
    assert _ids(alice_client.get(base + "?search=PARLIAMENT")) == [in_title.id]
    assert _ids(alice_client.get(base + '?search="AI Act"')) == [in_title.id]
    assert _ids(alice_client.get(base + "?search=act -parliament")) == [in_summary.id]
    # No stemming (the "simple" configuration, for mixed languages): "adopt" is not "adopts".
    assert _ids(alice_client.get(base + "?search=adopt")) == []


def test_it_refuses_an_overlong_search(feed, alice_client):
    response = alice_client.get(f"/api/feeds/{feed.id}/posts/?search={'a' * 201}")

    assert response.status_code == 400


def test_it_does_not_show_another_feeds_posts_under_this_feed(alice, feed, alice_client):
    mine = _post(feed)
    other_feed_of_mine = FeedFactory(owner=alice)
    elsewhere = _post(other_feed_of_mine)

    assert _ids(alice_client.get(f"/api/feeds/{feed.id}/posts/")) == [mine.id]
    response = alice_client.get(f"/api/feeds/{feed.id}/posts/{elsewhere.id}/")
    assert response.status_code == 404


def test_it_hides_hidden_posts_unless_asked_and_filters_by_story(feed, alice_client):
    from processing.models import Story

    story = Story.objects.create(title="one event")
    shown = PostFactory(feed=feed, story=story)
    hidden = PostFactory(feed=feed, hidden=True, hidden_reason="no longer matches")

    default = alice_client.get(f"/api/feeds/{feed.id}/posts/").json()["results"]
    everything = alice_client.get(f"/api/feeds/{feed.id}/posts/?include_hidden=1").json()
    of_story = alice_client.get(f"/api/feeds/{feed.id}/posts/?story={story.id}").json()

    assert [p["id"] for p in default] == [shown.id]
    assert {p["id"] for p in everything["results"]} == {shown.id, hidden.id}
    assert [p["id"] for p in of_story["results"]] == [shown.id]


def test_it_explains_why_a_raw_post_was_dropped(feed, alice_client):
    from agents.models import AgentRun

    raw = RawPostFactory(source=feed.sources.first() or SourceFactory())
    AgentRun.objects.create(
        agent="relevance", model="offline", prompt_version="1", item_key=str(raw.id),
        input_hash="0" * 64, description_hash="0" * 64, feed=feed, raw_post=raw,
        output={"relevant": False, "score": 0.02, "reason": "about football"},
    )  # fmt: skip

    body = alice_client.get(f"/api/feeds/{feed.id}/decisions/?raw_post={raw.id}").json()

    (decision,) = body["results"]
    assert decision["raw_post_id"] == raw.id
    assert decision["output"]["reason"] == "about football"
    assert decision["output"]["relevant"] is False
