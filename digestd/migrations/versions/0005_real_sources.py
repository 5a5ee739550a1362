"""Real sources: papers carry their arXiv version, DOI, authors, categories, dates, links and
upvotes; versions are recorded; subscribers choose whether revised papers come again; each
configured source keeps its validators and health; requests to one host take turns through
a lease (host_lease) that every digestd process on the database shares.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _text(name: str, length: int | None = None) -> sa.Column[str]:
    return sa.Column(name, sqlmodel.AutoString(length=length), nullable=False, server_default="")


def upgrade() -> None:
    """Add the paper fields, paper_version, source_state, host_lease, dump.source/format, the
    subscribers' (and sign-ups') revised-papers choice and sent_paper.version."""
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("doi", sqlmodel.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("authors", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("categories", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("published", sa.Date(), nullable=True))
        for name in ("journal_ref", "comment", "abs_url", "pdf_url", "hf_url"):
            batch_op.add_column(_text(name))
        batch_op.add_column(sa.Column("upvotes", sa.Integer(), nullable=True))
        batch_op.add_column(_text("source", 64))
        batch_op.add_column(sa.Column("revised_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_paper_doi"), ["doi"])
        batch_op.create_index(batch_op.f("ix_paper_revised_at"), ["revised_at"])
    with op.batch_alter_table("dump", schema=None) as batch_op:
        batch_op.add_column(_text("source", 64))
        batch_op.add_column(
            sa.Column(
                "format", sqlmodel.AutoString(length=16), nullable=False, server_default="text"
            )
        )
    for table in ("subscriber", "sign_up_request"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("revised_papers", sa.Boolean(), nullable=False, server_default=sa.false())
            )
    with op.batch_alter_table("sent_paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
    op.create_table(
        "paper_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        _text("source", 64),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("paper_id", "version"),
    )
    with op.batch_alter_table("paper_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_version_paper_id"), ["paper_id"])
    op.create_table(
        "source_state",
        sa.Column("name", sqlmodel.AutoString(length=64), nullable=False),
        _text("url"),
        _text("etag"),
        _text("last_modified"),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_paper_count", sa.Integer(), nullable=True),
        sa.Column("last_new_count", sa.Integer(), nullable=True),
        _text("last_error"),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "host_lease",
        sa.Column("host", sqlmodel.AutoString(length=255), nullable=False),
        _text("holder"),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("free_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("host"),
    )


def downgrade() -> None:
    """Drop what upgrade added (the extra paper fields and recorded versions are lost)."""
    op.drop_table("host_lease")
    op.drop_table("source_state")
    op.drop_table("paper_version")
    with op.batch_alter_table("sent_paper", schema=None) as batch_op:
        batch_op.drop_column("version")
    for table in ("sign_up_request", "subscriber"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("revised_papers")
    with op.batch_alter_table("dump", schema=None) as batch_op:
        batch_op.drop_column("format")
        batch_op.drop_column("source")
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_revised_at"))
        batch_op.drop_index(batch_op.f("ix_paper_doi"))
        for name in ("revised_at", "source", "upvotes", "hf_url", "pdf_url", "abs_url"):
            batch_op.drop_column(name)
        for name in ("comment", "journal_ref", "published", "categories", "authors"):
            batch_op.drop_column(name)
        batch_op.drop_column("doi")
        batch_op.drop_column("version")
