"""infatium.db.bulk_insert: COPY on PostgreSQL, with bulk_create's contract."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from feeds.models import RawPost, Source
from infatium.db import bulk_insert

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
