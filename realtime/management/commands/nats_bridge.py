from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime.bridge import run_bridge


class Command(BaseCommand):
    help = (
        "Run the NATS bridge: relay the outbox to JetStream, answer agents.{type} requests and, "
        "with NATS_INGEST=1, ingest raw_posts.created from other publishers. SIGTERM stops it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-relay", action="store_true", help="Do not relay the outbox.")
        parser.add_argument(
            "--no-responders", action="store_true", help="Do not answer agents.{type}."
        )
        parser.add_argument(
            "--ingest",
            choices=["on", "off"],
            help="Override NATS_INGEST for this process.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.NATS_URL:
            # An unset optional service turns its feature off; it is not an error.
            self.stdout.write("NATS_URL is not set: the NATS bridge is off")
            return
        ingest = None if options["ingest"] is None else options["ingest"] == "on"
        asyncio.run(
            self._run(
                relay=not options["no_relay"],
                responders=not options["no_responders"],
                ingest=ingest,
            )
        )

    async def _run(self, **parts: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_bridge(stop, **parts)
