"""The curator's admin: failing sources are visible, "poll now" claims exactly once, feeds are
created with their sources and rules."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from feeds import services
from feeds.models import PollLog, PollStatus, RawPost, Source
from processing.models import Feed
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db

SOURCES = "/admin/feeds/source/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Autouse runs before the user fixtures: PBKDF2 costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client(django_user_model) -> Client:
    curator = django_user_model.objects.create_superuser("curator", "c@example.test", "pw")
    client = Client()
    client.force_login(curator)
    return client


@pytest.fixture
def failing_source(feed_server) -> Source:
    url = feed_server.serve("/gone.xml", b"gone", status=404, content_type="text/plain")
    source = Source.objects.create(url=url, title="Gone feed")
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    services.poll_source(source_id=source.id, token=claim.token)
    source.refresh_from_db()
    return source


def _action(client: Client, action: str, *ids: int):
    return client.post(
        SOURCES, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True
    )


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_it_shows_a_failing_source_in_the_change_list(admin_client, failing_source):
    response = admin_client.get(SOURCES)

    assert response.status_code == 200
    row = next(r for r in response.context["cl"].result_list if r.id == failing_source.id)
    assert row.last_status == PollStatus.HTTP_ERROR
    assert row.error_count == 1
    assert PollStatus.HTTP_ERROR in response.content.decode()


def test_it_shows_the_last_error_and_recent_polls_on_the_change_form(admin_client, failing_source):
    response = admin_client.get(f"{SOURCES}{failing_source.id}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert failing_source.last_error.startswith("HTTP 404 Not Found from")
    assert failing_source.last_error in page
    assert "Recent polls" in page
    assert page.count("HTTP 404 Not Found from") >= 2  # the source and its poll log row


def test_it_lists_sources_with_a_constant_number_of_queries(admin_client, feed_server):
    def queries_for(n: int) -> int:
        Source.objects.bulk_create(
            [Source(url=f"http://feeds.invalid/{n}-{i}.xml") for i in range(n)]
        )
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(SOURCES).status_code == 200
        return len(queries)

    assert queries_for(2) == queries_for(30)


def test_it_claims_and_queues_a_source_on_poll_now(
    admin_client, django_capture_on_commit_callbacks
):
    source = Source.objects.create(url="http://feeds.invalid/now.xml")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _action(admin_client, "poll_now", source.id)

    source.refresh_from_db()
    assert source.claim_token is not None
    assert source.claimed_until is not None
    assert _messages(response) == ["Queued 1 poll(s)."]
    # One chain (poll -> process) is handed to Celery once the claim commits.
    [send] = callbacks
    first_task = send.__self__.tasks[0]
    assert first_task.task == "feeds.tasks.poll_source"
    assert tuple(first_task.args) == (source.id, str(source.claim_token))


def test_it_skips_a_source_already_being_polled(admin_client, django_capture_on_commit_callbacks):
    busy = Source.objects.create(url="http://feeds.invalid/busy.xml")
    idle = Source.objects.create(url="http://feeds.invalid/idle.xml")
    _action(admin_client, "poll_now", busy.id)
    busy.refresh_from_db()
    token = busy.claim_token

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _action(admin_client, "poll_now", busy.id, idle.id)

    assert _messages(response) == [
        "Queued 1 poll(s).",
        "1 source(s) skipped: a poll is already running.",
    ]
    assert len(callbacks) == 1
    busy.refresh_from_db()
    idle.refresh_from_db()
    assert busy.claim_token == token  # the running poll keeps its claim
    assert idle.claim_token is not None


def test_it_enables_and_disables_sources(admin_client):
    source = Source.objects.create(url="http://feeds.invalid/toggle.xml")

    _action(admin_client, "disable", source.id)
    source.refresh_from_db()
    assert source.active is False

    _action(admin_client, "enable", source.id)
    source.refresh_from_db()
    assert source.active is True


def test_it_adds_a_source_and_validates_its_url(admin_client):
    # The read-only "Recent polls" inline still posts an (empty) formset.
    inline = {f"polls-{name}": "0" for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS")}
    form = {"kind": "rss", "poll_interval": "600", **inline}

    bad = admin_client.post(f"{SOURCES}add/", {**form, "url": "not a url"})
    good = admin_client.post(f"{SOURCES}add/", {**form, "url": "https://news.example/feed.xml"})

    assert bad.status_code == 200
    assert "Enter a valid URL." in bad.content.decode()
    assert good.status_code == 302
    source = Source.objects.get()
    assert (source.url, source.poll_interval, source.active) == (
        "https://news.example/feed.xml",
        600,
        False,  # an unticked checkbox is False: the curator decides when it goes live
    )


def test_it_saves_a_new_feed_with_sources_and_rules(admin_client, owner, feed_server):
    tech = Source.objects.create(url="http://feeds.invalid/tech.xml", title="Tech")
    world = Source.objects.create(url="http://feeds.invalid/world.xml", title="World")
    Source.objects.create(url="http://feeds.invalid/other.xml", title="Other")
    assert admin_client.get("/admin/processing/feed/add/").status_code == 200

    response = admin_client.post(
        "/admin/processing/feed/add/",
        {
            "name": "Languages",
            "owner": str(owner.id),
            "active": "on",
            "description": "Programming language news",
            "sources": [str(tech.id), str(world.id)],
            "include_keywords": "rust\r\npython\r\nmachine learning",
            "exclude_keywords": "crypto",
            "summaries": "on",
            "language": "en",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    feed = Feed.objects.get(name="Languages")
    assert feed.owner == owner
    assert set(feed.sources.values_list("id", flat=True)) == {tech.id, world.id}
    assert feed.include_keywords.splitlines() == ["rust", "python", "machine learning"]
    assert feed.exclude_keywords == "crypto"
    assert (feed.summaries, feed.tags, feed.language) == (True, False, "en")


def test_it_refuses_read_only_records_being_added(admin_client, failing_source, feed_server):
    url = feed_server.serve("/ok.xml", rss(("g1", "One")))
    source = Source.objects.create(url=url)
    claim = services.claim_source_now(source_id=source.id)
    services.poll_source(source_id=source.id, token=claim.token)

    assert admin_client.get("/admin/feeds/rawpost/add/").status_code == 403
    assert admin_client.get("/admin/feeds/polllog/add/").status_code == 403
    assert admin_client.get("/admin/feeds/rawpost/").status_code == 200
    polls = admin_client.get("/admin/feeds/polllog/")
    assert polls.status_code == 200
    assert len(polls.context["cl"].result_list) == PollLog.objects.count() == 2
    raw = RawPost.objects.get()
    assert admin_client.get(f"/admin/feeds/rawpost/{raw.id}/change/").status_code == 200


def test_the_health_filter_shows_failing_and_silent_sources(admin_client, failing_source):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    silent = Source.objects.create(
        url="https://quiet.example/feed",
        title="Quiet feed",
        mean_item_gap=3600,
        last_new_item_at=now - timedelta(days=30),
    )
    healthy = Source.objects.create(
        url="https://lively.example/feed",
        title="Lively feed",
        mean_item_gap=3600,
        last_new_item_at=now,
    )

    def titles(health: str) -> set[str]:
        page = admin_client.get(SOURCES, {"health": health})
        assert page.status_code == 200
        return {s.title for s in page.context["cl"].result_list}

    assert titles("failing") == {"Gone feed"}
    assert titles("silent") == {"Quiet feed"}
    assert titles("healthy") == {"Lively feed"}
    assert silent.is_silent and not healthy.is_silent
    log = admin_client.get(f"{SOURCES}{failing_source.id}/change/")
    assert b"HTTPStatusError" in log.content  # the error class of the failed poll, in the inline
