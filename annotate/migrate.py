"""Schema migrations of the annotation store through Alembic's API (no alembic.ini on disk).

``upgrade(url, revision="head") -> str`` creates or migrates the store and returns the revision it
ends at; ``current(url) -> str | None`` is the store's revision (None for an empty database);
``head() -> str`` is the newest revision shipped in ``annotate/migrations/versions``;
``known(revision)`` says whether this code ships that revision; ``exists(url)`` is False only for
a SQLite file that is not there (checked without connecting, which would create it). On PostgreSQL ``upgrade`` first
takes a transaction-level advisory lock (``UPGRADE_LOCK``), so concurrent upgrades of one database
run one after another (the later ones find the schema at head and do nothing); on SQLite the
migration's ``BEGIN IMMEDIATE`` serialises them. A store at a revision this code does not know
(written by a newer refinery) is a ``StoreError``, never migrated.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from annotate.db import StoreError, engine_for, normalize_url, write_engine

SCRIPT_LOCATION = str(Path(__file__).resolve().parent / "migrations")
UPGRADE_LOCK = 0x72656669  # pg_advisory_xact_lock key of `refinery annotate init` ("refi")


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config("sqlite:///unused.db"))


def head() -> str:
    return _scripts().get_current_head()


def known(revision: str) -> bool:
    return revision in {script.revision for script in _scripts().walk_revisions()}


def newer_message(url: str, revision: str) -> str:
    shown = make_url(normalize_url(url)).render_as_string(hide_password=True)
    return (f"the store {shown} was written by a newer refinery (revision {revision} unknown here; "
            f"this code knows up to {head()}): upgrade refinery")


def upgrade(url: str, revision: str = "head") -> str:
    engine = write_engine(engine_for(url))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
            have = MigrationContext.configure(connection).get_current_revision()
            if have is not None and not known(have):
                raise StoreError(newer_message(url, have))
            config = _config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def exists(url: str) -> bool:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).is_file()


def current(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
