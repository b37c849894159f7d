"""Apply and inspect Alembic migrations from code, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from budstikke.store.database import Database, translate_connection_errors

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Advisory lock id of schema migrations on PostgreSQL (any constant that no
# other lock in the database uses).
MIGRATION_LOCK = 0x6275_6473_0001


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(database: Database) -> None:
    """Apply every migration that the database has not had yet."""

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Processes starting together must not run the same migration
            # twice; the lock is held until this connection's transaction ends.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), "head")

    async with translate_connection_errors(), database.engine.connect() as connection:
        await connection.run_sync(upgrade)
        await connection.commit()


async def pending_revisions(database: Database) -> list[str]:
    """Return the revisions between the database's current one and head."""

    def compare(connection: Connection) -> list[str]:
        current = MigrationContext.configure(connection).get_current_revision()
        script = ScriptDirectory.from_config(alembic_config())
        return [rev.revision for rev in script.iterate_revisions("head", current)]

    async with translate_connection_errors(), database.engine.connect() as connection:
        return await connection.run_sync(compare)
