"""The feeds job: every topic's Atom feed and the index, rebuilt from the stored papers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from digestd import store
from digestd.config import Settings
from digestd.db import read_scope, session_scope
from digestd.feeds import FeedEntry, TopicFeed, paper_dates, write_feeds, written_by_digestd
from digestd.formatting import paper_byline, paper_date
from digestd.ingest import paper_url
from digestd.jobs.common import match_queries
from digestd.models import Paper
from digestd.runtime import Runtime
from digestd.trending import TRENDING_SLUG, ensure_trending, trending_out_of_date


def paper_page(paper: Paper) -> str:
    """The link to a stored paper's own page (see ``ingest.paper_url``); a page link its source
    gave that is not http(s) is passed over, since pages and feed readers make it clickable."""
    return paper_url(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abs_url=paper.abs_url if _is_http(paper.abs_url) else "",
        hf_url=paper.hf_url if _is_http(paper.hf_url) else "",
    )


def _is_http(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def feed_entry(paper: Paper, matched_terms: tuple[str, ...] = ()) -> FeedEntry:
    """A stored paper as a feed entry: published on its own date (the byline's: published,
    else its dump's), updated at its own instant, linking its own page, with its authors,
    categories and byline."""
    published, updated = paper_dates(paper_date(paper), paper.updated_at)
    return FeedEntry(
        uid=paper.uid,
        title=paper.title,
        abstract=paper.abstract,
        url=paper_page(paper),
        published=published,
        updated=updated,
        matched_terms=matched_terms,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        byline=paper_byline(paper).line,
    )


def feeds_out_of_date(settings: Settings, engine: Engine) -> bool:
    """Whether the feeds folder lacks the index, misses a topic's feed, or predates a topic
    (one removed and added again under the same slug with another query); or the Trending
    topic is not in step with the configuration (rebuilding the feeds brings it)."""
    folder = settings.folder("feeds")
    index = folder / "index.html"
    with read_scope(engine) as session:
        topic_rows = store.topics(session)
        if trending_out_of_date(session, settings):
            return True
    if not index.exists():
        return True
    written_at = datetime.fromtimestamp(index.stat().st_mtime, UTC)
    slugs = {topic.slug for topic in topic_rows}
    if any(p.stem not in slugs and written_by_digestd(p) for p in folder.glob("*.atom")):
        return True  # a removed topic's feed is still published
    return any(
        not (folder / f"{topic.slug}.atom").exists() or topic.created_at >= written_at
        for topic in topic_rows
    )


def run_feeds(settings: Settings, engine: Engine, *, runtime: Runtime | None = None) -> list[Path]:
    """Rebuild every topic's Atom feed and the feeds index (matching with ``runtime``'s
    cache when given), the Trending topic first brought in step with the configuration."""
    with read_scope(engine) as session:
        stale = trending_out_of_date(session, settings)
    if stale:
        with session_scope(engine) as session:
            ensure_trending(session, settings, now=datetime.now(UTC))
    with read_scope(engine) as session:
        topic_rows = store.topics(session)
        since = datetime.now(UTC) - timedelta(days=settings.feeds.lookback_days)
        papers = store.all_papers(session, since=since)
    # Newest first: by the paper's own date, then the newest stored.
    papers.sort(key=lambda p: (p.dump_date, store.aware(p.updated_at)), reverse=True)
    cache = runtime.match if runtime is not None else None
    matches = match_queries({t.slug: t.query for t in topic_rows}, papers, cache=cache)
    feeds = []
    for topic in topic_rows:
        hits = matches.get(topic.slug)
        matched = [p for p in papers if p.id is not None and p.id in hits]
        if topic.slug == TRENDING_SLUG:
            # Each day's list in upvote order, ties as the day's ranking breaks them (by id).
            matched.sort(key=lambda p: (-p.dump_date.toordinal(), -(p.upvotes or 0), p.id))
        entries = [feed_entry(p, hits[p.id or 0].terms) for p in matched][
            : settings.feeds.max_entries
        ]
        feeds.append(
            TopicFeed(
                slug=topic.slug,
                title=topic.title,
                query=topic.query,
                entries=tuple(entries),
                created_at=topic.created_at,
                description=topic.description,
            )
        )
    return write_feeds(
        feeds,
        out_dir=settings.folder("feeds"),
        base_url=settings.feeds.base_url,
        author_name=settings.feeds.author_name,
        site_name=settings.digest.site_name,
        templates_dir=settings.templates_dir,
    )
