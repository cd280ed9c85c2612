"""Schema migrations of the workflow store through Alembic's API (no alembic.ini on disk).

``upgrade(url, revision="head") -> str`` creates or migrates the store and returns the revision it
ends at; ``current(url) -> str | None`` is the store's revision (None for a database without the
workflow schema); ``head() -> str`` is the newest revision in ``workflows/migrations/versions``;
``known(revision)`` says whether this code ships that revision. The revision lives in the table
``workflow_alembic_version`` (not Alembic's default ``alembic_version``), so one database can hold the
workflow store and the annotation store side by side, each migrating on its own. On PostgreSQL
``upgrade`` first takes a transaction-level advisory lock (``UPGRADE_LOCK``), so concurrent upgrades
of one database run one after another (the later ones find the schema at head and do nothing); on
SQLite the migration's ``BEGIN IMMEDIATE`` serialises them. A store at a revision this code does not
know (written by a newer refinery) is a ``StoreError``, never migrated.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from workflows.db import VERSION_TABLE, StoreError, engine_for, masked_url, normalize_url, write_engine

SCRIPT_LOCATION = str(Path(__file__).resolve().parent / "migrations")
UPGRADE_LOCK = 0x776B666C  # pg_advisory_xact_lock key of the workflow store's upgrade ("wkfl")


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config("sqlite:///unused.db"))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head() -> str:
    return _scripts().get_current_head()


def known(revision: str) -> bool:
    return revision in {script.revision for script in _scripts().walk_revisions()}


def newer_message(url: str, revision: str) -> str:
    return (f"the workflow store {masked_url(url)} was written by a newer refinery (revision {revision} unknown here; "
            f"this code knows up to {head()}): upgrade refinery")


def upgrade(url: str, revision: str = "head") -> str:
    engine = write_engine(engine_for(url))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
            have = _revision(connection)
            if have is not None and not known(have):
                raise StoreError(newer_message(url, have))
            if have != head() or revision != "head":
                config = _config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            connection.commit()
            return _revision(connection)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return _revision(connection)
    finally:
        engine.dispose()
