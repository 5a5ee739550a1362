"""The feeds job: every topic's Atom feed and the index, rebuilt from the stored papers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from digestd import store
from digestd.config import Settings
from digestd.db import session_scope
from digestd.feeds import FeedEntry, TopicFeed, write_feeds, written_by_digestd
from digestd.ingest import paper_url
from digestd.jobs.common import match_queries


def feeds_out_of_date(settings: Settings, engine: Engine) -> bool:
    """Whether the feeds folder lacks the index, misses a topic's feed, or predates a topic
    (one removed and added again under the same slug with another query)."""
    folder = settings.folder("feeds")
    index = folder / "index.html"
    with session_scope(engine) as session:
        topic_rows = store.topics(session)
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


def run_feeds(settings: Settings, engine: Engine) -> list[Path]:
    """Rebuild every topic's Atom feed and the feeds index."""
    with session_scope(engine) as session:
        topic_rows = store.topics(session)
        since = datetime.now(UTC) - timedelta(days=settings.feeds.lookback_days)
        papers = store.all_papers(session, since=since)
    matches = match_queries({t.slug: t.query for t in topic_rows}, papers)
    feeds = []
    for topic in topic_rows:
        hits = matches.get(topic.slug)
        entries = [
            FeedEntry(
                uid=p.uid,
                title=p.title,
                abstract=p.abstract,
                url=paper_url(arxiv_id=p.arxiv_id, title=p.title),
                published=p.first_seen,
                matched_terms=hits[p.id].terms,
            )
            for p in papers
            if p.id is not None and p.id in hits
        ][: settings.feeds.max_entries]
        feeds.append(
            TopicFeed(
                slug=topic.slug,
                title=topic.title,
                query=topic.query,
                entries=tuple(entries),
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
