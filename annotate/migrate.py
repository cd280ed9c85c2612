"""Schema migrations of the annotation store through Alembic's API (no alembic.ini on disk).

``upgrade(url, revision="head") -> str`` creates or migrates the store and returns the revision it
ends at; ``current(url) -> str | None`` is the store's revision (None for an empty database);
``head() -> str`` is the newest revision shipped in ``annotate/migrations/versions``.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from annotate.db import engine_for, normalize_url, write_engine

SCRIPT_LOCATION = str(Path(__file__).resolve().parent / "migrations")


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config("sqlite:///unused.db")).get_current_head()


def upgrade(url: str, revision: str = "head") -> str:
    engine = write_engine(engine_for(url))
    try:
        with engine.connect() as connection:
            config = _config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
