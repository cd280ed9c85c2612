"""Alembic environment for the annotation store.

Run through ``annotate.migrate`` (no alembic.ini on disk): the caller passes an open connection in
``config.attributes["connection"]``, or a url as the ``sqlalchemy.url`` main option, and the engine is
built by ``annotate.db.engine_for`` (so SQLite gets WAL, the busy timeout and BEGIN IMMEDIATE).
Migrations run in one transaction (SQLite DDL is transactional under the BEGIN recipe too).
"""
from __future__ import annotations

from alembic import context

from annotate.db import Base, engine_for, write_engine


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = write_engine(engine_for(context.config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the annotation store migrates online only (annotate.migrate.upgrade)")
run_migrations_online()
