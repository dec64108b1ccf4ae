"""Bulk inserts through PostgreSQL's COPY: the hot path of a poll writes dozens of rows at once.

`bulk_insert(model, objs)` is `Model.objects.bulk_create(objs)` (every row new, ids set on the
objects) at a fraction of the cost on PostgreSQL: the rows stream through COPY instead of one
INSERT whose values psycopg quotes one by one on the client. Elsewhere (SQLite) it is
bulk_create. A unique violation raises IntegrityError as bulk_create would: call it inside a
savepoint when a conflict is possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


def bulk_insert(model: type[M], objs: Sequence[M]) -> list[M]:
    if not objs:
        return []
    if connection.vendor != "postgresql":
        return model.objects.bulk_create(objs)
    meta = model._meta
    fields = list(meta.concrete_fields)
    pk = meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        missing = [obj for obj in objs if obj.pk is None]
        if missing:
            if not isinstance(pk, models.AutoField | models.BigAutoField):
                raise ValueError(f"{model.__name__}: rows without a primary key")
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, pk.column, len(missing)],
            )
            for obj, (new_id,) in zip(missing, cursor.fetchall(), strict=True):
                obj.pk = new_id
        for obj in objs:
            for field in fields:
                # What save() would do first: auto_now dates, defaults already set on init.
                field.pre_save(obj, add=True)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        statement = f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN"
        # The raw psycopg cursor: Django's errors (IntegrityError...) come from the wrapper.
        with connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
            for obj in objs:
                copy.write_row(
                    [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
                )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return list(objs)
