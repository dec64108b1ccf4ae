from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime.contract import write


class Command(BaseCommand):
    help = (
        "Write the event contract generated from realtime/events.py: docs/events/*.schema.json "
        "(JSON Schema) and docs/asyncapi.yaml (AsyncAPI 3.0). Commit the result."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--docs", type=Path, default=Path(settings.BASE_DIR) / "docs", help="Output folder."
        )

    def handle(self, *args: Any, docs: Path, **options: Any) -> None:
        for path in write(docs):
            self.stdout.write(f"wrote {path}")
