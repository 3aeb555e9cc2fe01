"""``model_insert``: ``Model.objects.create`` without compiling the INSERT every time.

For the rows the hot paths write on every submission and transition (the run, its history rows).
The statement is built once per model from its concrete fields; each call runs the fields'
``pre_save`` (``auto_now_add``, defaults already set by the constructor) and
``get_db_prep_save`` exactly as Django's insert compiler does, and sends one INSERT. Nothing
here sends model signals: the models it is used for have no receivers (a test checks).
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField, BigAutoField, Model, SmallAutoField

_AUTO_FIELDS = (AutoField, BigAutoField, SmallAutoField)


@functools.cache
def _statement(model: type[Model], vendor_alias: str) -> tuple[str, tuple, object]:
    connection = connections[vendor_alias]
    quote = connection.ops.quote_name
    meta = model._meta
    fields = tuple(field for field in meta.concrete_fields
                   if not getattr(field, "generated", False) and not isinstance(field, _AUTO_FIELDS))
    returning = meta.pk if meta.pk not in fields else None
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    if returning is not None:
        sql += f" RETURNING {quote(returning.column)}"
    return sql, fields, returning


def model_insert(instance: Model, *, using: str = DEFAULT_DB_ALIAS) -> Model:
    """INSERT ``instance`` (a new object) and return it saved, its generated key set."""
    sql, fields, returning = _statement(type(instance), using)
    connection = connections[using]
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if returning is not None:
            setattr(instance, returning.attname, cursor.fetchone()[0])
    instance._state.adding = False
    instance._state.db = using
    return instance
