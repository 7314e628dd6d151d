"""Alembic environment: always run on the connection the hub passes in."""

from __future__ import annotations

from alembic import context

import hub.db.models  # noqa: F401  (registers every table on Base.metadata)
from hub.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `iothub db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
