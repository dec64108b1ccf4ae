from __future__ import annotations

import asyncio
import getpass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Sign in to Telegram interactively (phone, code, 2FA password) and print the session "
        "string to put in TELEGRAM_SESSION for `manage.py telegram_gateway`."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--api-id", type=int, help="Default: TELEGRAM_API_ID.")
        parser.add_argument("--api-hash", help="Default: TELEGRAM_API_HASH.")

    def handle(self, *args: Any, **options: Any) -> None:
        api_id = options["api_id"] or settings.TELEGRAM_API_ID
        api_hash = options["api_hash"] or settings.TELEGRAM_API_HASH
        if not api_id or not api_hash:
            raise CommandError(
                "set TELEGRAM_API_ID and TELEGRAM_API_HASH (from https://my.telegram.org/apps) "
                "or pass --api-id and --api-hash"
            )
        session = asyncio.run(self._login(api_id, api_hash))
        # Printed for the operator only, never logged: the string is a password equivalent.
        self.stdout.write(
            "\nSigned in. Put this in TELEGRAM_SESSION (better: a file named by "
            "TELEGRAM_SESSION_FILE). Anyone holding it can use your account; run one gateway "
            "per session.\n"
        )
        self.stdout.write(session)

    async def _login(self, api_id: int, api_hash: str) -> str:
        from telethon import TelegramClient
        from telethon.sessions import StringSession

        client = TelegramClient(StringSession(), api_id, api_hash)
        try:
            await client.start(
                phone=lambda: input("Phone number (international format, +...): "),
                code_callback=lambda: input("Login code Telegram sent you: "),
                password=lambda: getpass.getpass("Two-step verification password: "),
            )
            me = await client.get_me()
            self.stdout.write(f"Signed in as {getattr(me, 'username', None) or me.id}.")
            return str(client.session.save())
        finally:
            await client.disconnect()
