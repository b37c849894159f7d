"""Alembic environment: runs the migrations on the connection that budstikke passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from budstikke.store.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `budstikke migrate`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
