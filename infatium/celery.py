"""The Celery application. Configuration lives in settings (CELERY_* names)."""

from __future__ import annotations

import contextlib
import os
from contextvars import Token
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init
from celery.worker.consumer import Consumer as _Consumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infatium.settings")

app = Celery("infatium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**_: Any) -> None:
    # Workers and beat log like every other process (settings.LOGGING: JSON or text, context
    # ids, redaction) instead of Celery's own root-logger setup.
    from django.conf import settings

    from infatium.logging import configure

    configure(settings.LOGGING)


# task id -> the token that restores the context the task started in.
_task_contexts: dict[str, Token[Any]] = {}


@task_prerun.connect
def _bind_task_to_logs(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from infatium.logging import bind

    if task_id is not None:
        _task_contexts[task_id] = bind(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task_from_logs(task_id: str | None = None, **_: Any) -> None:
    from infatium.logging import unbind

    token = _task_contexts.pop(task_id, None) if task_id is not None else None
    if token is not None:
        # ValueError: set in another context (a pool that switched threads); nothing to undo.
        with contextlib.suppress(ValueError):
            unbind(token)


@task_prerun.connect
@task_postrun.connect
def _release_connections(task: Any = None, **_: Any) -> None:
    """Database connections around each task as Django handles them around each request: given
    back to the pool (or kept while CONN_MAX_AGE allows), dropped if an error left them unusable.
    The pool checks a connection before lending it (CONN_HEALTH_CHECKS), so one the database
    dropped meanwhile (restart, terminated backend) is replaced, not handed to a task.

    Celery's Django fixup would instead close every connection and, in prefork children with
    DB_POOL, the whole pool around each task: a new PostgreSQL connection per task, several ms
    each. CELERY_DB_REUSE_MAX tells it to do so only every so many tasks.
    """
    if task is None or getattr(task.request, "is_eager", False):
        return  # run inline by the caller (tests): its connection and transaction are its own
    from django.db import close_old_connections

    close_old_connections()


@worker_process_init.connect
def _drop_inherited_connection_pools(**_: Any) -> None:
    # A prefork child must not share the parent's pooled PostgreSQL sockets: each child opens
    # its own pool on first use.
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


class Consumer(_Consumer):
    """The worker's consumer (CELERY_WORKER_CONSUMER): reconnects after the broker went away
    while acks_late tasks were unacknowledged, as Celery 5.6 did.

    On a lost connection Celery 5.7 collects the broken connection (which detaches its
    transport) and then also closes it. With the Redis transport that close drops the
    channel's connection pool, and anything that later touches the channel (putting the
    unacknowledged messages back on close, or acking a task that was running during the
    outage) must rebuild the pool from the detached transport: AttributeError, not a
    connection error, so the worker logs "Unrecoverable error" and exits (tests/chaos: a Redis
    restart with tasks in flight). Collecting alone already releases the connection; without
    the close, the channel keeps its pool, which reconnects, and late acks go through.
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        if connection is not None:
            # Celery closes it through this attribute (kombu.common.ignore_errors).
            connection.close = connection.release = _collected_already
        super().on_connection_error_after_connected(exc)


def _collected_already() -> None:
    """Closing a collected connection: nothing left to release."""
