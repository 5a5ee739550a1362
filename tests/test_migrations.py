"""Migrations from the previous release's schema, with its data, to the outbox schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from digestd.db import _alembic_config, check_schema, make_engine, migrate


def test_release_one_data_migrates_to_the_outbox(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscriber (id, email, name, timezone, frequency, send_hour, weekday,"
            " active, created_at) VALUES (1, 'a@example.org', '', 'UTC', 'daily', 7, 'mon', 1,"
            " '2026-11-01 07:00:00')"
        )
        # Release one kept a failed try and then the sent digest under the same key, and
        # called a digest it could not build an "error".
        for row_id, key, status in (
            (1, "2026-11-20", "failed"),
            (2, "2026-11-20", "sent"),
            (3, "2026-11-21", "error"),
            (4, "2026-11-22", "empty"),
        ):
            conn.exec_driver_sql(
                "INSERT INTO delivery (id, subscriber_id, digest_key, status, message_id,"
                " paper_count, reply, created_at) VALUES (?, 1, ?, ?, '<m@x>', 0, '',"
                " '2026-11-20 07:00:00')",
                (row_id, key, status),
            )
    migrate(engine)
    check_schema(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        rows = conn.exec_driver_sql(
            "SELECT id, digest_key, status, attempts, sent_at IS NOT NULL FROM delivery ORDER BY id"
        ).all()
        assert [tuple(r) for r in rows] == [
            (1, "2026-11-20#1", "failed", 1, 0),
            (2, "2026-11-20", "sent", 1, 1),
            (3, "2026-11-21", "failed", 1, 0),
            (4, "2026-11-22", "empty", 0, 0),
        ]
        suppressed = conn.exec_driver_sql("SELECT suppressed_at, suppressed_reason FROM subscriber")
        assert [tuple(r) for r in suppressed] == [(None, "")]
    # And back down to release one, and up again.
    command.downgrade(_alembic_config(engine), "0001")
    migrate(engine)
    check_schema(engine)
