"""Migrations from the previous release's schema, with its data, to the outbox schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from digestd.db import _alembic_config, check_schema, make_engine, migrate
from digestd.ingest import title_key


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


def test_release_three_data_migrates_to_sign_up_requests_and_unique_paper_instants(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_alembic_config(engine), "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO dump (id, sha256, file_name, dump_date, ingested_at, paper_count,"
            " new_count) VALUES (1, 'x', 'a.txt', '2024-03-14', '2026-11-01 07:00:00', 3, 3)"
        )
        # One ingest stamped its three papers with one instant; one title has an ø.
        for paper_id, title in ((1, "Søren's Paper"), (2, "Second"), (3, "Third")):
            conn.exec_driver_sql(
                "INSERT INTO paper (id, uid, title_key, arxiv_id, title, abstract, dump_id,"
                " dump_date, first_seen) VALUES (?, ?, 'oldkey', NULL, ?, '', 1, '2024-03-14',"
                " '2026-11-01 07:00:00.000000')",
                (paper_id, f"t:{paper_id}", title),
            )
        conn.exec_driver_sql(
            "INSERT INTO subscriber (id, email, name, timezone, frequency, send_hour, weekday,"
            " active, created_at, suppressed_reason) VALUES (1, 'a@example.org', '', 'UTC',"
            " 'daily', 7, 'mon', 1, '2026-11-01 07:00:00', '')"
        )
    migrate(engine)
    check_schema(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        rows = conn.exec_driver_sql(
            "SELECT id, uid, title_key, updated_at FROM paper ORDER BY id"
        ).all()
        # Each paper has an instant of its own, in stored order; its uid never changes.
        assert [row[3] for row in rows] == [
            "2026-11-01 07:00:00.000000",
            "2026-11-01 07:00:00.000001",
            "2026-11-01 07:00:00.000002",
        ]
        assert [row[1] for row in rows] == ["t:1", "t:2", "t:3"]
        # The non-ASCII title is keyed as the code keys it now; ASCII ones keep their key.
        assert rows[0][2] == title_key("Soren's Paper") == title_key("Søren's Paper")
        assert [row[2] for row in rows[1:]] == ["oldkey", "oldkey"]
        assert conn.exec_driver_sql("SELECT fault FROM delivery").all() == []
    command.downgrade(_alembic_config(engine), "0003")
    migrate(engine)
    check_schema(engine)


def test_surplus_open_digests_are_closed_before_one_open_digest_is_enforced(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'raced.db'}")
    command.upgrade(_alembic_config(engine), "0006")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscriber (id, email, name, timezone, frequency, send_hour, weekday,"
            " active, created_at) VALUES (1, 'a@example.org', '', 'UTC', 'daily', 7, 'mon', 1,"
            " '2026-11-01 07:00:00')"
        )
        # Two runs that raced before 0007 left two open digests for one subscriber.
        for row_id, key, status in (
            (1, "2026-11-20", "sent"),
            (2, "2026-11-21", "planned"),
            (3, "2026-11-21T070000", "sending"),
        ):
            conn.exec_driver_sql(
                "INSERT INTO delivery (id, subscriber_id, digest_key, status, message_id,"
                " paper_count, reply, created_at)"
                " VALUES (?, 1, ?, ?, '<m@x>', 0, '', '2026-11-21 07:00:00')",
                (row_id, key, status),
            )
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, status FROM delivery ORDER BY id").all()
        assert [tuple(r) for r in rows] == [(1, "sent"), (2, "planned"), (3, "failed")]
    # And now the database refuses a second open digest.
    with engine.connect() as conn, pytest.raises(IntegrityError, match="UNIQUE"):
        conn.exec_driver_sql(
            "INSERT INTO delivery (subscriber_id, digest_key, status, message_id,"
            " paper_count, reply, created_at)"
            " VALUES (1, 'k', 'retry', '<n@x>', 0, '', '2026-11-22')"
        )
