"""The demo `make run` seeds: its sources keep the short interval the demo promises."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from feeds.models import Source
from feeds.services import next_interval

pytestmark = pytest.mark.django_db


def test_demo_sources_are_polled_at_their_fixed_short_interval(django_user_model, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 60
    django_user_model.objects.create_user(username="admin", password="admin-pass-123")

    call_command("seed_demo", "--interval", "15")

    sources = list(Source.objects.all())
    assert sources and all(not s.adaptive and s.poll_interval == 15 for s in sources)
    # A poll that found nothing new keeps the live feed at 15 s (the README: every 20 s an item).
    assert {next_interval(s, new_items=0, mean_gap=None, min_interval=None) for s in sources} == {
        15
    }
