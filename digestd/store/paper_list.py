"""The stored papers as ``digestd papers`` lists them: newest first, by the paper's own date."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func
from sqlmodel import Session, col, select

from digestd.models import Paper


def listed_papers(
    session: Session, *, since: date | None = None, source: str | None = None
) -> list[Paper]:
    """Stored papers, newest first by their own date (published, else their dump's date; as a
    byline shows it), then the most recently stored first; only those dated ``since`` or later,
    and only those first stored by ``source``, when given."""
    own_date = func.coalesce(col(Paper.published), col(Paper.dump_date))
    query = select(Paper).order_by(own_date.desc(), col(Paper.first_seen).desc(), col(Paper.id))
    if since is not None:
        query = query.where(own_date >= since)
    if source is not None:
        query = query.where(Paper.source == source)
    return list(session.exec(query).all())
