"""What every feed promises its readers: nothing a validator warns about (whatever the titles
hold), entries dated by the paper itself, and links that all resolve on the running web
application. The feeds are made by the real pipeline (ingest, topics, a send run) and fetched
from the application under uvicorn."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit
from xml.etree import ElementTree

import feedparser
import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, read_scope, session_scope
from digestd.models import Paper, Subscriber
from digestd.runtime import Runtime
from digestd.tokens import link_url
from digestd.web.recent import check_queries_text
from tests.conftest import free_port
from tests.support.web_server import running_app, site_settings

ATOM = "{http://www.w3.org/2005/Atom}"
# Titles a validator or a reader could take for markup, entities or broken text.
HOSTILE_TITLES = [
    "Oracle <b>bold</b> &amp; friends",
    "Oracle ]]> breaks CDATA & <script>alert(1)</script>",
    "Oracle with controls \x01\x07\x1b[31m\x7f\x85 and a lost \ufffd character",
    "Oracle &lt;escaped&gt; &#169; &copy",
]
HOSTILE_DUMP = "new\n\nGet trending papers in your email inbox!\n\nMar 12\n\n" + "".join(
    f"{title}\n\nAn oracle paper number {n} whose abstract mentions <i>markup</i> & "
    f"entities &amp; like that, long enough to be read as an abstract by the parser.\n\n"
    for n, title in enumerate(HOSTILE_TITLES)
)


@dataclass
class Pipeline:
    settings: Settings
    engine: Engine
    base_url: str
    subscriber_id: int


@pytest.fixture
def pipeline(config_file: Path, sample_path: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The sample and a dump of hostile titles ingested, three topics, one subscriber who got
    a digest (file backend), the feeds built, and the web application serving it all."""
    port = free_port()
    settings = site_settings(load_settings(config_file, environ={}), port=port)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    hostile = tmp_path / "hostile.txt"
    hostile.write_text(HOSTILE_DUMP, encoding="utf-8")
    report = jobs.run_ingest(settings, engine, [sample_path, hostile], reference=date(2024, 3, 20))
    assert report.new == 87 + len(HOSTILE_TITLES), report
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        store.add_topic(session, "llm", query="language model", title="LLMs & <agents>", now=now)
        store.add_topic(session, "oracle", query="oracle", title="Oracles </b>", now=now)
        store.add_topic(session, "empty", query="zebra", title="Zebras", now=now)
        subscriber = store.add_subscriber(session, "ada@example.org", queries=["oracle"], now=now)
        session.flush()
        subscriber_id = subscriber.id
    assert subscriber_id is not None
    sent = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert sent.count("sent") == 1
    jobs.run_feeds(settings, engine)
    with running_app(settings, engine, port=port) as base_url:
        yield Pipeline(settings, engine, base_url, subscriber_id)
    engine.dispose()


def private_feed_url(pipeline: Pipeline) -> str:
    return link_url(
        pipeline.base_url,
        pipeline.settings.link_secret(),
        "feed",
        pipeline.subscriber_id,
        "ada@example.org",
    )


def feed_urls(pipeline: Pipeline) -> list[str]:
    topics = [f"{pipeline.base_url}/feeds/{slug}.atom" for slug in ("llm", "oracle", "empty")]
    return [*topics, private_feed_url(pipeline)]


def fetch(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, (url, response.status_code)
    return response


def stored_papers(engine: Engine) -> dict[str, Paper]:
    with read_scope(engine) as session:
        return {p.uid: p for p in session.exec(select(Paper)).all()}


# Point 15: nothing a validator warns about


def test_no_feed_holds_anything_a_validator_warns_about(pipeline: Pipeline) -> None:
    # The checks the W3C Feed Validator makes that titles and dates can trip (CI runs the
    # validator itself on the same kind of feeds): text constructs holding what looks like
    # HTML must be declared HTML; no C1 control or U+FFFD; no two entries updated at the
    # same instant; no implausible date.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for url in feed_urls(pipeline):
        body = fetch(url).content
        root = ElementTree.fromstring(body)
        constructs = [
            e for name in ("title", "subtitle", "summary") for e in root.iter(f"{ATOM}{name}")
        ]
        assert constructs, url
        for element in constructs:
            assert element.get("type") == "html", (url, element.tag)
            assert not re.search("[\x80-\x9f\ufffd]", element.text or ""), url
        updated = [e.findtext(f"{ATOM}updated") for e in root.iter(f"{ATOM}entry")]
        assert len(updated) == len(set(updated)), url
        for stamp in [*updated, root.findtext(f"{ATOM}updated")]:
            assert stamp is not None and "1990-01-01" <= stamp <= tomorrow, (url, stamp)


def test_hostile_titles_read_back_exactly_as_written(pipeline: Pipeline) -> None:
    parsed = feedparser.parse(fetch(f"{pipeline.base_url}/feeds/oracle.atom").content)
    assert not parsed.bozo
    titles = {html.unescape(entry.title) for entry in parsed.entries}
    for title in HOSTILE_TITLES:
        # What a feed reader shows: the text written, less the control characters.
        shown = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]", "", title)
        assert shown in titles
    assert html.unescape(parsed.feed.title) == "digestd: Oracles </b>"


# Point 16: dated by the paper


def test_entries_are_published_on_the_papers_own_date_and_updated_only_when_it_changes(
    pipeline: Pipeline, sample_path: Path
) -> None:
    papers = stored_papers(pipeline.engine)
    first = feedparser.parse(fetch(f"{pipeline.base_url}/feeds/llm.atom").content)
    assert first.entries
    for entry in first.entries:
        paper = papers[entry.id.removeprefix("urn:digestd:paper:")]
        # The sample's date line (Mar 14), not the moment it was ingested.
        assert entry.published == "2024-03-14T00:00:00+00:00"
        assert entry.updated == store.aware(paper.updated_at).isoformat()
    # Ingesting the same papers again and rebuilding changes no entry's dates.
    copy = pipeline.settings.data_dir / "copy.txt"
    copy.write_text(sample_path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert jobs.run_ingest(pipeline.settings, pipeline.engine, [copy]).known == 87
    jobs.run_feeds(pipeline.settings, pipeline.engine)
    again = feedparser.parse(fetch(f"{pipeline.base_url}/feeds/llm.atom").content)
    assert [(e.id, e.published, e.updated) for e in again.entries] == [
        (e.id, e.published, e.updated) for e in first.entries
    ]
    assert again.feed.updated == first.feed.updated


def test_the_query_check_counts_papers_by_their_own_date(pipeline: Pipeline) -> None:
    # Papers stored now count by their own date: a dump dated a month before the newest adds
    # nothing to "the last 7 days", one dated the day before adds its papers.
    def oracle_dump(name: str, day: str, count: int) -> Path:
        path = pipeline.settings.data_dir / name
        path.write_text(
            f"new\n\nGet trending papers in your email inbox!\n\n{day}\n\n"
            + "".join(
                f"Oracle study {name} {n}\n\nWe study an oracle in depth, number {n}, with "
                "experiments that are long enough for an abstract of a paper.\n\n"
                for n in range(count)
            ),
            encoding="utf-8",
        )
        return path

    runtime = Runtime(pipeline.settings, pipeline.engine)  # the web application's
    before = check_queries_text(runtime, "oracle").matches
    old = oracle_dump("old.txt", "Feb 10", 3)
    jobs.run_ingest(pipeline.settings, pipeline.engine, [old], reference=date(2024, 3, 20))
    assert check_queries_text(runtime, "oracle").matches == before
    recent = oracle_dump("recent.txt", "Mar 13", 2)
    jobs.run_ingest(pipeline.settings, pipeline.engine, [recent], reference=date(2024, 3, 20))
    assert check_queries_text(runtime, "oracle").matches == before + 2


# Point 17: every link resolves


def test_every_link_in_every_feed_resolves_on_the_web_application(pipeline: Pipeline) -> None:
    site = urlsplit(pipeline.base_url).netloc
    checked: set[str] = set()
    for url in feed_urls(pipeline):
        root = ElementTree.fromstring(fetch(url).content)
        links = [link.get("href") or "" for link in root.iter(f"{ATOM}link")]
        assert any(link for link in links if urlsplit(link).netloc == site), url
        for link in links:
            if urlsplit(link).netloc != site:
                assert link.startswith("https://arxiv.org/"), link  # the papers themselves
                continue
            page, fragment = urldefrag(link)
            if page not in checked:
                fetch(page)
                checked.add(page)
            if fragment:
                assert f'id="{fragment}"' in fetch(page).text, link
    # The alternate link of a topic feed is that topic's part of the front page.
    assert f"{pipeline.base_url}/" in checked


def test_the_feeds_index_is_served_and_its_links_resolve(pipeline: Pipeline) -> None:
    index = fetch(f"{pipeline.base_url}/feeds/")
    assert index.headers["content-type"].startswith("text/html")
    assert index.content == (pipeline.settings.folder("feeds") / "index.html").read_bytes()
    assert fetch(f"{pipeline.base_url}/feeds/index.html").content == index.content
    hrefs = re.findall(r'href="([^"]+)"', index.text)
    assert {f"{slug}.atom" for slug in ("llm", "oracle", "empty")} <= set(hrefs)
    for href in hrefs:
        target = urljoin(f"{pipeline.base_url}/feeds/", html.unescape(href))
        body = fetch(target).content
        assert feedparser.parse(body).version == "atom10", target
    # Without its slash it leads to the index, on this site.
    moved = httpx.get(f"{pipeline.base_url}/feeds", timeout=10)
    assert moved.status_code in (301, 307, 308)
    assert urljoin(f"{pipeline.base_url}/feeds", moved.headers["location"]) == (
        f"{pipeline.base_url}/feeds/"
    )


def test_an_empty_private_feed_is_dated_by_the_subscriber(pipeline: Pipeline) -> None:
    now = datetime.now(UTC)
    with session_scope(pipeline.engine) as session:
        newcomer = store.add_subscriber(session, "new@example.org", queries=["x"], now=now)
        session.flush()
        newcomer_id = newcomer.id
        created = session.get(Subscriber, newcomer_id)
        assert created is not None
    assert newcomer_id is not None
    url = link_url(
        pipeline.base_url, pipeline.settings.link_secret(), "feed", newcomer_id, "new@example.org"
    )
    parsed = feedparser.parse(fetch(url).content)
    assert parsed.entries == []
    assert parsed.feed.updated == now.isoformat()


def test_private_feed_links_stay_on_the_site(pipeline: Pipeline) -> None:
    # The private feed links home and to itself on base_url, never on the request's Host.
    response = httpx.get(private_feed_url(pipeline), headers={"Host": "evil.example"}, timeout=10)
    assert response.status_code == 200
    assert b"evil.example" not in response.content
    assert f'href="{pipeline.base_url}/"'.encode() in response.content
