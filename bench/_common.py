"""Shared set-up for benchmarks: a throwaway PostgreSQL database and Django."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def setup_django(database: str) -> str:
    """Create (or recreate) `database` on the server of DATABASE_URL, migrate it, set Django up.
    Returns the database URL for child processes."""
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/infatium")
    parts = urlsplit(base)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit("benchmarks need PostgreSQL: set DATABASE_URL to a postgresql:// URL")
    import psycopg

    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = urlunsplit(parts._replace(path=f"/{database}"))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("FETCH_ALLOWED_NETWORKS", "127.0.0.0/8,::1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infatium.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url
