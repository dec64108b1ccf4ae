from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from feeds.demo import LIVE_PATH, STATIC_FEEDS, make_server


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve the demo feeds on 127.0.0.1 (one of them gains an item every few seconds)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--every", type=float, default=20.0, help="Seconds per live item.")

    def handle(self, *args: Any, port: int, every: float, **options: Any) -> None:
        server = make_server("127.0.0.1", port, every=every)
        # serve_forever runs on this thread, so shutdown() from a handler here would wait on
        # itself; leave the loop by raising instead, like Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        paths = ", ".join([*STATIC_FEEDS, LIVE_PATH])
        self.stdout.write(f"demo feeds on http://127.0.0.1:{port} ({paths})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
