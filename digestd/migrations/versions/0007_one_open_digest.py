"""At most one open digest (planned, sending, retry) per subscriber, kept by the database: a
partial unique index, so that two planners at the same moment (two processes, two machines)
cannot both put a digest for one subscriber into the outbox. A digest being sent is held by
the process sending it (``claimed_by``) until ``lease_until``, the database's own time: another
process takes it over only once that has passed (the holder died).

Open rows that already break the rule (left by runs that raced before this) are closed first:
the oldest open row of each subscriber stays, the others are marked failed with the reason.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OPEN = "status IN ('planned', 'sending', 'retry')"


def upgrade() -> None:
    """Add the claim columns; close the surplus open rows, then add the partial unique index."""
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_by", sa.String(length=96), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE delivery SET status = 'failed', next_attempt_at = NULL, reply = "
        "'closed: another open digest of this subscriber came first (one open digest each)' "
        f"WHERE {_OPEN} AND id > (SELECT MIN(other.id) FROM delivery AS other "
        f"WHERE other.subscriber_id = delivery.subscriber_id AND other.{_OPEN})"
    )
    op.create_index(
        "uq_delivery_one_open",
        "delivery",
        ["subscriber_id"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    """Drop the index and the claim columns."""
    op.drop_index("uq_delivery_one_open", table_name="delivery")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("claimed_by")
