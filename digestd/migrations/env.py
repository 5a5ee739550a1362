"""Alembic environment: runs migrations on the engine digestd hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import digestd.models  # noqa: F401  (registers the tables on SQLModel.metadata)

MIGRATION_LOCK = 0x6469676573746400  # "digestd\0": the advisory lock of schema changes
engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration recreates a table (copy, drop, rename): with foreign keys on,
        # dropping the old table would cascade into every table that references it. The
        # pragma only takes effect outside a transaction, hence the raw driver connection.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=sqlite,
    )
    with context.begin_transaction():
        # Migrations once, however many processes start at the same moment: they take turns
        # (PostgreSQL: an advisory lock held to the end of this transaction; SQLite: the write
        # lock every digestd transaction takes up front), and each runs only what the version
        # table, read after its turn came, says is still to do.
        if not sqlite:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
    connection.commit()
    if sqlite:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
