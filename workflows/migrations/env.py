"""Alembic environment for the workflow store.

Run through ``workflows.migrate`` (no alembic.ini on disk): the caller passes an open connection in
``config.attributes["connection"]``, or a url as the ``sqlalchemy.url`` main option, and the engine is
built by ``workflows.db.engine_for`` (so SQLite gets WAL, the busy timeout and BEGIN IMMEDIATE). The
revision is kept in ``workflow_alembic_version``; only ``workflow_*`` tables are compared, so another
store's tables in the same database are left alone. Migrations run in one transaction.
"""
from __future__ import annotations

from alembic import context

from workflows.db import VERSION_TABLE, Base, engine_for, write_engine


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    return type_ != "table" or name.startswith("workflow_")


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      include_object=_ours, render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
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
    raise SystemExit("the workflow store migrates online only (workflows.migrate.upgrade)")
run_migrations_online()
