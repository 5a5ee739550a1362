"""The built-in Trending topic: the day's most upvoted papers, as a feed and a topic to follow.

It is an ordinary topic row under the reserved slug ``trending`` (titled "Trending"), so it is
offered wherever topics are: the sign-up and manage pages, ``digestd topic list``, the feeds
index, ``digestd subscriber follow EMAIL trending``. Its query says what it is in the query
language (digestd.match.query): ``upvotes:top10 upvotes:>=1`` for ``[trending] papers = 10``
and ``min_upvotes = 1``, so a digest, the feed and the web preview all pick the same papers:
the day's ten most upvoted (by each paper's own day), none below the minimum.

The row exists while ``[trending] enabled`` is true and some stored paper has an upvote count
(a source that counts them, such as Hugging Face Daily Papers, has been fetched); it is kept
in step with the configuration when the feeds are rebuilt (after a fetch or an ingest that
stored papers, and by ``digestd feeds``). When it is disabled the row goes, and its follows
with it: followers keep their other queries and topics, and a follower left with nothing gets
no digest (as after ``digestd topic remove``, but not paused: enabling it again offers it
again). Operators cannot add, edit or remove it with ``digestd topic`` commands (the store
refuses the reserved slug).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session

from digestd.config import Settings, TrendingSettings
from digestd.i18n import N_
from digestd.models import Topic
from digestd.store.trending import (
    TRENDING_SLUG,
    any_upvotes,
    drop_trending_row,
    put_trending_row,
    trending_row,
)

log = logging.getLogger("digestd")

TRENDING_TITLE = "Trending"
TRENDING_DESCRIPTION = N_("The most upvoted papers of each day on Hugging Face Daily Papers.")

__all__ = ["TRENDING_SLUG", "ensure_trending", "trending_out_of_date", "trending_query"]


def trending_query(trending: TrendingSettings) -> str:
    """The Trending topic's query for these settings: ``upvotes:top10 upvotes:>=1``."""
    return f"upvotes:top{max(trending.papers, 1)} upvotes:>={max(trending.min_upvotes, 0)}"


def _wanted(session: Session, settings: Settings) -> bool:
    return settings.trending.enabled and any_upvotes(session)


def trending_out_of_date(session: Session, settings: Settings) -> bool:
    """Whether the Trending topic's row disagrees with the configuration and the papers
    (missing, present when it should not be, or with another query)."""
    row = trending_row(session)
    if not _wanted(session, settings):
        return row is not None
    return row is None or row.query != trending_query(settings.trending)


def ensure_trending(session: Session, settings: Settings, *, now: datetime) -> Topic | None:
    """Bring the Trending topic's row in step with the configuration and the papers: created
    or updated while wanted, removed (with its follows) otherwise. Returns the row, if any."""
    if not _wanted(session, settings):
        if trending_row(session) is not None:
            dropped = drop_trending_row(session)
            log.info("Trending topic removed (%d follower(s) unfollowed)", dropped)
        return None
    query = trending_query(settings.trending)
    row = trending_row(session)
    if row is not None and row.query == query:
        return row
    log.info("Trending topic %s: %s", "added" if row is None else "updated", query)
    return put_trending_row(
        session, title=TRENDING_TITLE, query=query, description=TRENDING_DESCRIPTION, now=now
    )
