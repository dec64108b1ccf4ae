from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# FloodWaits up to this many seconds are slept through inside Telethon; longer ones reach the
# gateway, which defers that channel's work and carries on with the others.
FLOOD_SLEEP_THRESHOLD = 5


class Command(BaseCommand):
    help = (
        "Run the Telegram gateway: read every active Telegram source over MTProto (periodic "
        "reconcile plus live new/edited/deleted messages). Exactly one process per session; "
        "SIGTERM stops it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TELEGRAM_GATEWAY_ENABLED:
            missing = [
                name
                for name, value in (
                    ("TELEGRAM_API_ID", settings.TELEGRAM_API_ID),
                    ("TELEGRAM_API_HASH", settings.TELEGRAM_API_HASH),
                    ("TELEGRAM_SESSION", settings.TELEGRAM_SESSION),
                )
                if not value
            ]
            raise CommandError(
                f"the Telegram gateway needs {', '.join(missing)} (API id and hash from "
                "https://my.telegram.org/apps, the session from `manage.py telegram_login`). "
                "Without them Telegram channels are read from the t.me web preview by the "
                "normal poll; no gateway is needed."
            )
        asyncio.run(self._run())

    async def _run(self) -> None:
        from telethon import TelegramClient
        from telethon.sessions import StringSession

        from feeds.telegram.gateway import Gateway

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        client = TelegramClient(
            StringSession(settings.TELEGRAM_SESSION),
            settings.TELEGRAM_API_ID,
            settings.TELEGRAM_API_HASH,
            flood_sleep_threshold=FLOOD_SLEEP_THRESHOLD,
            base_logger="telethon",
        )
        await client.connect()
        try:
            if not await client.is_user_authorized():
                raise CommandError(
                    "TELEGRAM_SESSION is not signed in (revoked, expired or from another API "
                    "id): create a new one with `manage.py telegram_login`"
                )
            me = await client.get_me()
            self.stdout.write(
                f"telegram gateway running as {getattr(me, 'username', None) or me.id}; "
                f"reconcile every {settings.TELEGRAM_RECONCILE_SECONDS} s"
            )
            running = asyncio.create_task(Gateway(client).run(stop), name="telegram-gateway")
            lost = asyncio.ensure_future(client.disconnected)
            await asyncio.wait({running, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                # Telethon reconnects by itself; this is the connection given up for good.
                stop.set()
                await running
                reason = lost.exception() if not lost.cancelled() else None
                raise CommandError(
                    f"the connection to Telegram was lost and not re-established ({reason}); "
                    "exiting so the supervisor restarts the gateway"
                )
            running.result()  # an exception from the gateway ends the process with it
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
            self.stdout.write("telegram gateway stopped")
