"""Promises under hostile use: sign-up requests carry their own preferences; a failed digest
says whose fault it was; papers get a unique updated instant; titles fold ø, æ, ß and the like.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of digestd.folding and ingest.papers.title_key as of this migration: a
# migration must give the same result whatever the code becomes later.
_UNDECOMPOSABLE = str.maketrans(
    {"ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
    | {"ħ": "h", "ŧ": "t"}
)
_WORD = re.compile(r"[^\W_]+")

_PAPER = sa.table(
    "paper",
    sa.column("id", sa.Integer),
    sa.column("title", sa.String),
    sa.column("title_key", sa.String),
    sa.column("first_seen", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def _title_key(title: str) -> str:
    folded = unicodedata.normalize("NFKD", title).casefold().translate(_UNDECOMPOSABLE)
    folded = unicodedata.normalize("NFKD", folded)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return hashlib.sha256(" ".join(_WORD.findall(folded)).encode()).hexdigest()[:32]


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def upgrade() -> None:
    """Add the sign-up request table, delivery.fault and paper.updated_at (each paper's first
    stored instant, a microsecond apart within one ingest); fold the title keys again."""
    op.create_table(
        "sign_up_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sqlmodel.AutoString(length=32), nullable=False),
        sa.Column("queries", sqlmodel.AutoString(), nullable=False),
        sa.Column("topics", sqlmodel.AutoString(), nullable=False),
        sa.Column("frequency", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("send_hour", sa.Integer(), nullable=False),
        sa.Column("timezone", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("weekday", sqlmodel.AutoString(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
    )
    with op.batch_alter_table("sign_up_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_up_request_subscriber_id"), ["subscriber_id"])
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fault", sqlmodel.AutoString(length=16), nullable=False, server_default="")
        )
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_PAPER.c.id, _PAPER.c.title, _PAPER.c.first_seen).order_by(
            _PAPER.c.first_seen, _PAPER.c.id
        )
    ).all()
    changes = []
    previous: datetime | None = None
    for paper_id, title, first_seen in rows:
        # Papers of one ingest share first_seen: each gets the next free microsecond.
        stamp = _as_utc(first_seen)
        if previous is not None and stamp <= previous:
            stamp = previous + timedelta(microseconds=1)
        previous = stamp
        change = {"paper_id": paper_id, "updated_at": stamp, "title_key": None}
        if not title.isascii():
            change["title_key"] = _title_key(title)
        changes.append(change)
    for start in range(0, len(changes), 1000):
        chunk = changes[start : start + 1000]
        connection.execute(
            _PAPER.update()
            .where(_PAPER.c.id == sa.bindparam("paper_id"))
            .values(
                updated_at=sa.bindparam("updated_at"),
                title_key=sa.func.coalesce(sa.bindparam("title_key"), _PAPER.c.title_key),
            ),
            chunk,
        )
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.alter_column(
            "updated_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_paper_updated_at"), ["updated_at"], unique=True)


def downgrade() -> None:
    """Drop the sign-up requests (pending sign-ups keep their first preferences),
    delivery.fault and paper.updated_at. Title keys stay folded: they only find more duplicates."""
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_updated_at"))
        batch_op.drop_column("updated_at")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("fault")
    op.drop_table("sign_up_request")
