"""Feeds: owner-only CRUD, sources by id, rules as lists, options, quota, backfill on change."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from feeds.models import Source
from feeds.services import QuotaExceeded
from processing import services, tasks
from processing.models import Feed
from tests.api.factories import FeedFactory, SourceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def backfills(monkeypatch) -> list[int]:
    """Feed ids whose backfill was enqueued."""
    calls: list[int] = []
    monkeypatch.setattr(
        tasks, "enqueue_feed_refresh", lambda feed_id, reevaluate=False: calls.append(feed_id)
    )
    return calls


def test_it_creates_a_feed_with_sources_rules_and_options(
    alice, alice_client, backfills, django_capture_on_commit_callbacks
):
    sources = SourceFactory.create_batch(2)

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            "/api/feeds/",
            {
                "name": "EU AI",
                "description": "EU AI regulation",
                "sources": [s.id for s in sources],
                "include_keywords": ["AI Act", "  regulation ", "AI Act"],
                "exclude_keywords": ["sports"],
                "summaries": False,
                "tags": True,
                "language": "en",
                "owner": 12345,
            },
            format="json",
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    feed = Feed.objects.get(id=body["id"])
    assert feed.owner == alice
    assert feed.include_keywords == "AI Act\nregulation"
    assert body["include_keywords"] == ["AI Act", "regulation"]
    assert body["exclude_keywords"] == ["sports"]
    assert sorted(body["sources"]) == sorted(s.id for s in sources)
    assert (body["summaries"], body["tags"], body["language"]) == (False, True, "en")
    assert backfills == [feed.id]


def test_it_refuses_unknown_source_ids_and_saves_nothing(alice_client):
    source = SourceFactory()

    response = alice_client.post(
        "/api/feeds/", {"name": "x", "sources": [source.id, 999999]}, format="json"
    )

    assert response.status_code == 400
    assert "999999" in str(response.json()["sources"])
    assert not Feed.objects.exists()


def test_it_refuses_a_second_feed_with_the_same_name(alice, alice_client, bob_client):
    FeedFactory(owner=alice, name="News")

    mine = alice_client.post("/api/feeds/", {"name": "News"}, format="json")
    bobs = bob_client.post("/api/feeds/", {"name": "News"}, format="json")

    assert mine.status_code == 400
    assert "name" in mine.json()
    assert bobs.status_code == 201  # names are unique per owner only


def test_it_refuses_a_feed_over_the_quota(alice_client, settings):
    settings.FEED_QUOTA_PER_USER = 1

    first = alice_client.post("/api/feeds/", {"name": "one"}, format="json")
    second = alice_client.post("/api/feeds/", {"name": "two"}, format="json")

    assert (first.status_code, second.status_code) == (201, 403)
    assert Feed.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_holds_the_quota_under_concurrent_creates(settings):
    settings.FEED_QUOTA_PER_USER = 3
    user = UserFactory()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create(n: int) -> None:
        try:
            barrier.wait()
            services.create_feed(owner=user, name=f"feed {n}")
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    assert Feed.objects.filter(owner=user).count() == 3


@pytest.mark.django_db(transaction=True)
def test_it_holds_the_source_quota_under_concurrent_creates(settings):
    from feeds.services import create_source

    settings.SOURCE_QUOTA_PER_USER = 2
    user = UserFactory()
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def create(n: int) -> None:
        try:
            barrier.wait()
            create_source(user=user, url=f"https://burst.example/{n}")
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] * 2 + ["refused"] * 4
    assert Source.objects.filter(created_by=user).count() == 2


def test_it_patches_only_the_fields_sent(alice, alice_client):
    feed = FeedFactory(owner=alice, description="keep me", include_keywords="a\nb")

    response = alice_client.patch(f"/api/feeds/{feed.id}/", {"name": "renamed"}, format="json")

    assert response.status_code == 200
    feed.refresh_from_db()
    assert (feed.name, feed.description, feed.include_keywords) == ("renamed", "keep me", "a\nb")


def test_it_requires_the_name_on_put(alice, alice_client):
    feed = FeedFactory(owner=alice)

    response = alice_client.put(f"/api/feeds/{feed.id}/", {"description": "x"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()


def test_it_backfills_only_when_sources_are_added(
    alice, alice_client, backfills, django_capture_on_commit_callbacks
):
    old, new = SourceFactory(), SourceFactory()
    feed = FeedFactory(owner=alice, sources=[old])

    with django_capture_on_commit_callbacks(execute=True):
        removed = alice_client.patch(f"/api/feeds/{feed.id}/", {"sources": []}, format="json")
    assert removed.status_code == 200
    assert backfills == []

    with django_capture_on_commit_callbacks(execute=True):
        added = alice_client.patch(f"/api/feeds/{feed.id}/", {"sources": [new.id]}, format="json")
    assert added.json()["sources"] == [new.id]
    assert backfills == [feed.id]


def test_it_deletes_a_feed_but_not_its_sources(alice, alice_client):
    source = SourceFactory()
    feed = FeedFactory(owner=alice, sources=[source])

    response = alice_client.delete(f"/api/feeds/{feed.id}/")

    assert response.status_code == 204
    assert not Feed.objects.filter(id=feed.id).exists()
    assert Source.objects.filter(id=source.id).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 201},
        {"name": "x", "sources": ["one"]},
        {"name": "x", "sources": list(range(1, 502))},
        {"name": "x", "include_keywords": "not a list"},
        {"name": "x", "include_keywords": ["two\nlines"]},
        {"name": "x", "include_keywords": ["k"] * 201},
        {"name": "x", "language": "english please"},
    ],
)
def test_it_refuses_malformed_feeds(body, alice_client):
    response = alice_client.post("/api/feeds/", body, format="json")

    assert response.status_code == 400
    assert not Feed.objects.exists()


def test_it_lists_only_the_callers_feeds_without_a_query_per_feed(
    alice, alice_client, django_assert_num_queries
):
    sources = SourceFactory.create_batch(3)
    feeds = [FeedFactory(owner=alice, sources=sources) for _ in range(5)]
    FeedFactory()  # someone else's

    # The feeds page, then every listed feed's source ids in one query.
    with django_assert_num_queries(2):
        response = alice_client.get("/api/feeds/")

    assert [f["id"] for f in response.json()["results"]] == [f.id for f in reversed(feeds)]
    assert all(len(f["sources"]) == 3 for f in response.json()["results"])


def test_it_accepts_as_many_keywords_as_allowed_however_long(alice_client):
    words = [f"keyword number {n}" for n in range(200)]

    response = alice_client.post(
        "/api/feeds/", {"name": "many", "include_keywords": words}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["include_keywords"] == words


def test_the_owner_sets_and_clears_the_feeds_daily_token_budget(alice, alice_client, settings):
    settings.AGENT_FEED_TOKEN_BUDGET_MAX = 50_000
    feed = FeedFactory(owner=alice, description="keep me")

    set_ = alice_client.patch(
        f"/api/feeds/{feed.id}/", {"token_budget_daily": 20_000}, format="json"
    )
    renamed = alice_client.patch(f"/api/feeds/{feed.id}/", {"name": "other"}, format="json")
    too_much = alice_client.patch(
        f"/api/feeds/{feed.id}/", {"token_budget_daily": 50_001}, format="json"
    )
    feed.refresh_from_db()
    kept = feed.token_budget_daily
    cleared = alice_client.patch(
        f"/api/feeds/{feed.id}/", {"token_budget_daily": None}, format="json"
    )
    created = alice_client.post(
        "/api/feeds/", {"name": "offline only", "token_budget_daily": 0}, format="json"
    )

    assert set_.status_code == 200 and set_.json()["token_budget_daily"] == 20_000
    assert renamed.json()["token_budget_daily"] == 20_000  # untouched when not sent
    assert too_much.status_code == 400 and "token_budget_daily" in too_much.json()
    assert kept == 20_000
    assert cleared.status_code == 200 and cleared.json()["token_budget_daily"] is None
    assert created.status_code == 201 and created.json()["token_budget_daily"] == 0
    feed.refresh_from_db()
    assert feed.token_budget_daily is None and feed.description == "keep me"
