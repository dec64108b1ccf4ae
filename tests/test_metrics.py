from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from feeds.models import RawPost, Source
from realtime import outbox

pytestmark = pytest.mark.django_db


def test_it_shows_outbox_size_and_lag_to_a_scraper_with_the_token_only(settings):
    settings.METRICS_TOKEN = "scrape-me-please-0123456789"
    source = Source.objects.create(url="http://feeds.invalid/m.xml")
    raw = RawPost.objects.create(source=source, external_id="m1", content_hash="0" * 64)
    with transaction.atomic():
        outbox.record_raw_posts_created([raw])

    anonymous = Client().get("/metrics")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    scraped = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")

    assert (anonymous.status_code, wrong.status_code, scraped.status_code) == (403, 403, 200)
    body = scraped.content.decode()
    assert "infatium_outbox_pending 1\n" in body
    assert "infatium_outbox_lag_seconds " in body


def test_it_lets_staff_read_metrics_without_a_token(admin_client):
    assert admin_client.get("/metrics").status_code == 200
