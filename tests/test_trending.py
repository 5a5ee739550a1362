"""The built-in Trending topic: offered while enabled and some paper has upvotes, its feed and a
follower's digest the day's most upvoted papers, its slug reserved; on real SQLite files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import PathsSettings, Settings, TrendingSettings, load_settings
from digestd.db import make_engine, migrate, read_scope, session_scope
from digestd.errors import InputError
from digestd.ingest import DumpFile, ParsedDump, ParsedPaper
from digestd.trending import TRENDING_SLUG, ensure_trending
from tests.conftest import CliResult

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)
_dumps = iter(range(10**6))


def make_settings(tmp_path: Path, **trending: object) -> Settings:
    return Settings(
        paths=PathsSettings(data_dir=str(tmp_path / "data")),
        trending=TrendingSettings(**trending),  # type: ignore[arg-type]
    )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    settings = make_settings(tmp_path)
    made = make_engine(settings.database_url, create=True)
    migrate(made)
    return made


def put(engine: Engine, day: date, *papers: ParsedPaper) -> None:
    """Store ``papers`` as one response for ``day``, fetched an hour ago."""
    number = next(_dumps)
    dump = DumpFile(Path(f"hf-{number}.json"), f"{number:064x}", ParsedDump(day, tuple(papers)))
    with session_scope(engine) as session:
        store.store_dump(session, dump, now=NOW - timedelta(hours=1), source="hf")


def paper(name: str, upvotes: int | None) -> ParsedPaper:
    arxiv_id = f"2606.{ord(name):05d}"
    return ParsedPaper(
        f"Paper {name}",
        "Graph models.",
        arxiv_id=arxiv_id,
        hf_url=f"https://huggingface.co/papers/{arxiv_id}",
        upvotes=upvotes,
    )


def store_two_days(engine: Engine) -> None:
    """Today: a 9, b 30, c 2, d 30 (stored after b), e without upvotes, f 0. Yesterday: g 5,
    h 50, i 1, j 7."""
    put(
        engine,
        TODAY,
        paper("a", 9),
        paper("b", 30),
        paper("c", 2),
        paper("d", 30),
        paper("e", None),
        paper("f", 0),
    )
    put(engine, YESTERDAY, paper("g", 5), paper("h", 50), paper("i", 1), paper("j", 7))


def feed_titles(settings: Settings) -> list[str]:
    parsed = feedparser.parse(str(settings.folder("feeds") / f"{TRENDING_SLUG}.atom"))
    assert not parsed.bozo, parsed.bozo_exception
    return [entry.title for entry in parsed.entries]


def slugs(engine: Engine) -> list[str]:
    with read_scope(engine) as session:
        return [topic.slug for topic in store.topics(session)]


def test_the_feed_lists_each_days_most_upvoted_in_upvote_order(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, papers=3)
    store_two_days(engine)
    jobs.run_feeds(settings, engine)
    assert slugs(engine) == [TRENDING_SLUG]
    # b and d tie at 30: the one stored first leads. Papers without upvotes never count.
    expected = ["Paper b", "Paper d", "Paper a", "Paper h", "Paper j", "Paper g"]
    assert feed_titles(settings) == expected
    index = (settings.folder("feeds") / "index.html").read_text(encoding="utf-8")
    assert "Trending" in index and "upvotes:top3 upvotes:&gt;=1" in index


def test_a_follower_gets_the_papers_the_feed_shows(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, papers=2, min_upvotes=6)
    store_two_days(engine)
    jobs.run_feeds(settings, engine)
    with session_scope(engine) as session:
        store.add_subscriber(session, "reader@example.org", topic_slugs=[TRENDING_SLUG], now=NOW)
    planned = jobs.prepare_digests(settings, engine, now=NOW, ignore_schedule=True)
    assert len(planned) == 1
    titles = sorted(entry.title for entry in planned[0].digest.entries)
    assert titles == sorted(feed_titles(settings)) == ["Paper b", "Paper d", "Paper h", "Paper j"]


def test_no_trending_topic_without_upvotes_or_when_disabled(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    put(engine, TODAY, paper("x", None), paper("y", None))
    jobs.run_feeds(settings, engine)
    assert slugs(engine) == []
    assert not (settings.folder("feeds") / f"{TRENDING_SLUG}.atom").exists()
    with session_scope(engine) as session, pytest.raises(Exception, match="no topic"):
        store.add_subscriber(session, "r@example.org", topic_slugs=[TRENDING_SLUG], now=NOW)

    store_two_days(engine)
    assert jobs.feeds_out_of_date(settings, engine)  # the topic is due: the daemon rebuilds
    jobs.run_feeds(settings, engine)
    assert slugs(engine) == [TRENDING_SLUG]
    with session_scope(engine) as session:
        store.add_subscriber(
            session, "r@example.org", queries=["graph"], topic_slugs=["trending"], now=NOW
        )

    disabled = make_settings(tmp_path, enabled=False)
    assert jobs.feeds_out_of_date(disabled, engine)
    jobs.run_feeds(disabled, engine)
    assert slugs(engine) == []
    assert not (disabled.folder("feeds") / f"{TRENDING_SLUG}.atom").exists()
    with read_scope(engine) as session:
        reader = store.subscriber_by_email(session, "r@example.org")
        assert reader.active and store.topics_of(session, reader.id or 0) == []
        assert store.queries_of(session, reader.id or 0) == ["graph"]  # the rest is kept
    assert not jobs.feeds_out_of_date(disabled, engine)


def test_a_changed_setting_updates_the_topics_query(engine: Engine, tmp_path: Path) -> None:
    store_two_days(engine)
    with session_scope(engine) as session:
        first = ensure_trending(session, make_settings(tmp_path), now=NOW)
        assert first is not None and first.query == "upvotes:top10 upvotes:>=1"
    with session_scope(engine) as session:
        later = ensure_trending(session, make_settings(tmp_path, papers=5), now=NOW)
        assert later is not None and later.query == "upvotes:top5 upvotes:>=1"
        assert later.title == "Trending"


Cli = Callable[..., CliResult]


def test_operators_cannot_add_edit_or_remove_the_reserved_topic(
    cli: Cli, config_file: Path
) -> None:
    assert cli("init").code == 0
    refused = cli("topic", "add", "trending", "--query", "llm")
    assert refused.code != 0 and "'trending' is reserved" in refused.err
    engine = make_engine(load_settings(config_file).database_url)
    store_two_days(engine)
    engine.dispose()
    assert cli("feeds").code == 0
    listed = cli("topic", "list")
    assert "trending" in listed.out and "Trending" in listed.out
    for args in (("edit", "trending", "--title", "Hot"), ("remove", "trending", "--force")):
        result = cli("topic", *args)
        assert result.code != 0 and "reserved" in result.err
        assert len(result.err.strip().splitlines()) <= 2  # the error and its hint
    assert cli("subscriber", "add", "fan@example.org", "--topic", "trending").code == 0
    engine = make_engine(load_settings(config_file).database_url)
    with session_scope(engine) as session, pytest.raises(InputError):
        store.remove_topic(session, "trending")
    engine.dispose()
