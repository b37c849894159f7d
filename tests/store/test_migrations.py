"""The Alembic migrations produce exactly the SQLAlchemy metadata, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from budstikke.store.database import Database
from budstikke.store.migrate import alembic_config, pending_revisions, upgrade_to_head
from budstikke.store.tables import metadata


def test_migrations_have_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


async def test_head_matches_metadata(database: Database) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        diff = await connection.run_sync(differences)

    assert diff == []


async def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    await upgrade_to_head(database)
    assert await pending_revisions(database) == []
