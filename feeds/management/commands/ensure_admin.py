from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin user if missing. Credentials come from ADMIN_USERNAME/ADMIN_PASSWORD, "
        "else a generated password kept in var/admin-password.txt (mode 0600)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD", "")
        password_file = settings.VAR_DIR / "admin-password.txt"
        if not password:
            if password_file.exists():
                password = password_file.read_text().strip()
            else:
                password = secrets.token_urlsafe(12)
                settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
                password_file.touch(mode=0o600)
                password_file.write_text(password + "\n")
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            users.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"created admin user {username!r}")
        elif os.environ.get("ADMIN_PASSWORD"):
            user.set_password(password)
            user.save(update_fields=["password"])
        self.stdout.write(f"admin login: {username} / {password}")
