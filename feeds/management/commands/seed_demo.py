from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from feeds.demo import LIVE_PATH, STATIC_FEEDS
from feeds.models import Source, SourceKind
from processing.models import Feed


class Command(BaseCommand):
    help = "Create demo sources (the served sample feeds) and demo feeds. Safe to re-run."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8001")
        parser.add_argument("--owner", default="admin", help="Username owning the demo feeds.")
        parser.add_argument("--interval", type=int, default=15, help="Poll interval, seconds.")

    def handle(self, *args: Any, base_url: str, owner: str, interval: int, **_: Any) -> None:
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user {owner!r}; create it first (manage.py ensure_admin)")
        with transaction.atomic():
            sources = []
            for path in [*STATIC_FEEDS, LIVE_PATH]:
                source, _ = Source.objects.get_or_create(
                    kind=SourceKind.RSS,
                    url=base_url.rstrip("/") + path,
                    # A fixed interval: the demo shows items arriving every few seconds, which
                    # adaptive polling would stretch to POLL_MIN_INTERVAL_SECONDS.
                    defaults={"poll_interval": interval, "adaptive": False},
                )
                sources.append(source)
            everything, _ = Feed.objects.get_or_create(
                owner=user,
                name="Demo: everything",
                defaults={"description": "All items from the demo sources."},
            )
            everything.sources.add(*sources)
            focused, _ = Feed.objects.get_or_create(
                owner=user,
                name="Demo: AI, space and climate",
                defaults={
                    "description": "AI regulation and research, space, climate; no food news.",
                    "include_keywords": "AI\nspace\nclimate",
                    "exclude_keywords": "bakery",
                },
            )
            focused.sources.add(*sources)
        self.stdout.write(
            f"demo: {len(sources)} sources, feeds {everything.id} and {focused.id} for {owner}"
        )
