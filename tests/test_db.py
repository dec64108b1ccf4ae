"""infatium.db.bulk_insert: COPY on PostgreSQL, with bulk_create's contract; database connections
of worker tasks (infatium.celery)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from feeds.models import PollLog, RawPost, Source
from infatium.celery import _release_connections
from infatium.db import bulk_insert
from realtime.models import OutboxEvent

pytestmark = pytest.mark.django_db


def _raw(source: Source, external_id: str, title: str = "t") -> RawPost:
    return RawPost(source=source, external_id=external_id, title=title, content_hash="h")


def test_it_inserts_every_row_and_sets_the_ids_the_rows_got():
    source = Source.objects.create(url="https://a.example/feed")
    rows = [
        _raw(source, str(n), title=f"Title {n} with 'quotes', \\ and \t tabs") for n in range(5)
    ]

    created = bulk_insert(RawPost, rows)

    assert [r.pk for r in created] == list(
        RawPost.objects.order_by("id").values_list("id", flat=True)
    )
    assert {r.pk: r.title for r in created} == dict(RawPost.objects.values_list("id", "title"))
    assert all(not r._state.adding for r in created)


def test_a_duplicate_raises_integrity_error_like_bulk_create():
    source = Source.objects.create(url="https://b.example/feed")
    bulk_insert(RawPost, [_raw(source, "1")])
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(RawPost, [_raw(source, "2"), _raw(source, "1")])
    assert RawPost.objects.filter(source=source).count() == 1


def test_it_writes_what_bulk_create_writes_converting_values_of_other_types():
    source = Source.objects.create(url="https://c.example/feed")
    log = PollLog.objects.create(source=source)
    claim = uuid.uuid4()

    def rows(prefix: str) -> list[RawPost]:
        return [
            RawPost(
                source=source,
                poll_id=str(log.id),  # converted to the id, as save() would
                external_id=7 if prefix == "copy" else 8,  # an int for a text column
                url="https://c.example/a",
                title=f"{prefix} ünïcode \\ tab\t",
                # Naive: made aware (with a warning), as save() does.
                published_at=datetime(2026, 1, 2, 3, 4, 5),  # noqa: DTZ001
                fetched_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                content_hash="h",
                process_claim=str(claim),  # a UUID as text
            )
        ]

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        [copied] = bulk_insert(RawPost, rows("copy"))
        [created] = RawPost.objects.bulk_create(rows("orm"))

    fields = ["poll_id", "url", "published_at", "fetched_at", "process_claim", "content_hash"]
    stored = {r.pk: r for r in RawPost.objects.all()}
    assert stored[copied.pk].external_id == "7" and stored[created.pk].external_id == "8"
    assert stored[copied.pk].title == "copy ünïcode \\ tab\t"
    assert [getattr(stored[copied.pk], f) for f in fields] == [
        getattr(stored[created.pk], f) for f in fields
    ]
    assert stored[copied.pk].process_claim == claim
    assert stored[copied.pk].published_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_it_writes_json_fields():
    payload = {"a": [1, 2.5, None, True], "b": {"c": 'ünï"code\\'}}
    [event] = bulk_insert(
        OutboxEvent, [OutboxEvent(subject="s", payload=payload, ordering_key="k")]
    )
    assert OutboxEvent.objects.get(id=event.id).payload == payload


_TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_worker_task_gives_its_connection_back_to_the_pool_and_keeps_the_pool():
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("needs PostgreSQL with DB_POOL")
    pool = connection.pool
    _release_connections(task=_TASK)  # prerun
    _backend_pid()

    _release_connections(task=_TASK)  # postrun

    assert connection.connection is None  # back in the pool
    assert connection.pool is pool and not pool.closed  # the pool lives on for the next task
    assert pool.get_stats()["pool_available"] >= 1


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_the_database_dropped_is_replaced_before_a_task_uses_it():
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("needs PostgreSQL with DB_POOL")
    _release_connections(task=_TASK)
    dropped = _backend_pid()
    _release_connections(task=_TASK)  # the connections wait in the pool...
    with psycopg.connect(_dsn(), autocommit=True) as other:
        # ...and the database ends every one of them (a restart, a failover).
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    _release_connections(task=_TASK)  # the next task
    assert _backend_pid() != dropped  # a working connection, not an error


def _dsn() -> str:
    settings = connection.settings_dict
    return (
        f"host={settings['HOST'] or '127.0.0.1'} port={settings['PORT'] or 5432} "
        f"user={settings['USER']} dbname={settings['NAME']}"
        + (f" password={settings['PASSWORD']}" if settings["PASSWORD"] else "")
    )
