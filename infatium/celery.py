"""The Celery application. Configuration lives in settings (CELERY_* names)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infatium.settings")

app = Celery("infatium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _drop_inherited_connection_pools(**_: Any) -> None:
    # A prefork child must not share the parent's pooled PostgreSQL sockets: each child opens
    # its own pool on first use.
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
