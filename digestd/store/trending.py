"""Queries for the built-in Trending topic (digestd.trending): its reserved row, and whether any
stored paper has an upvote count."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Follow, Paper, Topic

TRENDING_SLUG = "trending"  # reserved: the topic digestd keeps, never one an operator makes


def refuse_reserved(slug: str) -> None:
    """Raise InputError when ``slug`` is the reserved Trending topic's: operators may not add,
    edit or remove it (its row follows [trending] in the configuration)."""
    if slug == TRENDING_SLUG:
        raise InputError(
            f"topic slug {slug!r} is reserved for the built-in Trending topic",
            hint="set [trending] enabled = false in the configuration to remove it",
        )


def any_upvotes(session: Session) -> bool:
    """Whether some stored paper has an upvote count (its source counts them)."""
    query = select(Paper.id).where(col(Paper.upvotes).is_not(None)).limit(1)
    return session.exec(query).first() is not None


def trending_row(session: Session) -> Topic | None:
    """The Trending topic's row, if it exists."""
    return session.exec(select(Topic).where(Topic.slug == TRENDING_SLUG)).first()


def put_trending_row(
    session: Session, *, title: str, query: str, description: str, now: datetime
) -> Topic:
    """The Trending topic's row, created or brought to ``title``, ``query`` and
    ``description``; a changed query counts as a new topic from ``now`` (its feed is rebuilt)."""
    row = trending_row(session)
    if row is None:
        row = Topic(
            slug=TRENDING_SLUG, title=title, query=query, description=description, created_at=now
        )
    elif row.query != query:
        row.created_at = now
    row.title, row.query, row.description = title, query, description
    session.add(row)
    return row


def drop_trending_row(session: Session) -> int:
    """Delete the Trending topic's row and every follow of it; returns how many followed it."""
    row = trending_row(session)
    if row is None:
        return 0
    follows = session.exec(select(Follow).where(Follow.topic_id == row.id)).all()
    session.execute(delete(Follow).where(col(Follow.topic_id) == row.id))
    session.delete(row)
    return len(follows)
