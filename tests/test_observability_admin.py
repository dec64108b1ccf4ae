"""The admin index: staff see the system's health (from real rows); nobody else does."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from agents.models import AgentRun
from feeds.models import PollLog, PollStatus
from realtime import outbox
from tests.api.factories import FeedFactory, RawPostFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings, redis_client):  # redis_client: a flushed Redis database
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, element_id
    return match.group(1).strip()


def _agent_run(feed, **fields) -> AgentRun:
    return AgentRun.objects.create(
        agent="relevance",
        model="openai:gpt-4o-mini",
        prompt_version="1",
        item_key="1",
        input_hash="0" * 64,
        description_hash="0" * 64,
        feed=feed,
        **fields,
    )


def test_it_shows_staff_the_failing_and_silent_sources_outbox_spend_and_polls(
    django_user_model,
):
    staff = django_user_model.objects.create_user("ops", password="ops-pass-123", is_staff=True)
    now = timezone.now()
    empty = _client(staff).get("/admin/").content.decode()

    failing = SourceFactory(
        title="Broken Gazette", last_status="http_error", error_count=3, last_error="HTTP 500"
    )
    SourceFactory(mean_item_gap=3600.0, last_new_item_at=now - timedelta(days=3))
    SourceFactory(active=False, error_count=5)  # not polled: not counted as failing
    with transaction.atomic():
        outbox.record_raw_posts_created([RawPostFactory(source=failing)])
    feed = FeedFactory(name="Space news")
    _agent_run(feed, input_tokens=1200, output_tokens=300, cost=Decimal("0.0450"))
    _agent_run(feed, input_tokens=5, cost=Decimal("1"), created_at=now - timedelta(days=2))
    for status in (PollStatus.OK, PollStatus.OK, PollStatus.HTTP_ERROR):
        PollLog.objects.create(source=failing, status=status)

    html = _client(staff).get("/admin/").content.decode()

    assert _text(empty, "sources-failing") == "0"
    assert _text(html, "sources-failing") == "1"
    assert _text(html, "sources-silent") == "1"
    assert "?health=failing&amp;active__exact=1" in html
    assert "?health=silent&amp;active__exact=1" in html
    assert "Broken Gazette" in html and "HTTP 500" in html
    assert _text(empty, "outbox-pending") == "0"
    assert _text(html, "outbox-pending") == "1"
    assert _text(empty, "agents-tokens-in") == "0"
    assert _text(html, "agents-tokens-in") == "1200"  # today's only
    assert _text(html, "agents-tokens-out") == "300"
    assert _text(html, "agents-cost") == "0.0450"
    assert "Space news" in html
    assert 'data-status="ok">OK (new content): 2<' in html
    assert 'data-status="http_error">HTTP error: 1<' in html
    # The app list is still there below.
    assert "/admin/feeds/source/" in html


def test_it_shows_nothing_to_users_who_are_not_staff(django_user_model):
    user = django_user_model.objects.create_user("reader", password="reader-pass-123")
    SourceFactory(error_count=3, title="Broken Gazette")

    signed_in = _client(user).get("/admin/")
    anonymous = Client().get("/admin/")

    for response in (signed_in, anonymous):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert b"Broken Gazette" not in response.content
        assert b"sources-failing" not in response.content
