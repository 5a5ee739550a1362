"""The feeds over HTTP: topic feeds with ETag/304, the OPML index, private feeds, /healthz.

Real parts throughout: a SQLite file, the sample dump ingested, the feeds job and a send run
with the file backend; the router mounted in a bare FastAPI app and called through httpx.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import feedparser
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.feeds import entry_id, xml_safe
from digestd.ingest import paper_url
from digestd.models import Delivery, Dump, Paper, SentPaper
from digestd.sources.spec import SourceSpec
from digestd.tokens import link_url, make_token
from digestd.web import create_app
from digestd.web.feed_rebuild import FeedRebuild
from digestd.web.feeds_http import (
    PRIVATE_FEED_LIMIT,
    feeds_router,
    none_match,
    sent_entries,
    unmodified_since,
)
from digestd.web.health import health_router
from digestd.web.protocol import HeadAsGet
from tests.conftest import free_port

BASE = "https://digest.example.org"
HOSTILE_TITLE = "Evil <b>&amp; \"quoted\" 'single' ]]> \x01\x0b\x1f\x7f\x85 </opml>"
DATE_PARTS = ["Mon,", "32", "Feb", "1999", "3000000000", "25:61:61", "GMT", "-0000", "+9999", ","]
SECOND_DUMP = """new

Get trending papers in your email inbox!

Mar 15

Zebra Models for Oracle Training at Scale

We study zebra models that learn from an oracle during training. Our language model results \
show large gains on several benchmarks, and we release code and data for further research.

Another Zebra Paper on Model Oracles

This paper studies how a language model can be trained with an oracle signal. We present \
experiments on three datasets and find consistent improvements over strong baselines.
"""


@dataclass
class Site:
    settings: Settings
    engine: Engine
    app: FastAPI
    tmp_path: Path

    @property
    def feeds(self) -> Path:
        return self.settings.folder("feeds")

    def ingest_second_dump(self) -> None:
        path = self.tmp_path / "second.txt"
        path.write_text(SECOND_DUMP, encoding="utf-8")
        report = jobs.run_ingest(self.settings, self.engine, [path])
        assert report.files[0].new == 2, report


def bare_app(settings: Settings, engine: Engine) -> FastAPI:
    app = FastAPI()
    app.include_router(feeds_router(settings, engine))
    app.include_router(health_router(engine))
    app.add_middleware(HeadAsGet, router=app.router)  # as create_app answers HEAD
    return app


@pytest.fixture
def site(config_file: Path, sample_path: Path, tmp_path: Path) -> Iterator[Site]:
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        store.add_topic(session, "llm", query="language model", title="Language models", now=now)
        store.add_topic(session, "oracle", query="title:oracle", title="Oracles", now=now)
        store.add_topic(session, "zebra", query="zebra", title="Zebras", now=now)
    jobs.run_feeds(settings, engine)
    yield Site(settings, engine, bare_app(settings, engine), tmp_path)
    engine.dispose()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(site.app) as http:
        yield http


def parse_feed(body: bytes) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


# Topic feeds


async def test_topic_feed_is_the_file_the_feeds_job_wrote(
    site: Site, client: httpx.AsyncClient
) -> None:
    response = await client.get("/feeds/llm.atom")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    path = site.feeds / "llm.atom"
    assert response.content == path.read_bytes()
    parsed = parse_feed(response.content)
    assert len(parsed.entries) > 0
    assert parsed.feed.title == "digestd: Language models"
    from_file = parse_feed(path.read_bytes())
    assert [e.title for e in parsed.entries] == [e.title for e in from_file.entries]

    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10  # strong
    modified = parsedate_to_datetime(response.headers["last-modified"])
    assert modified == datetime.fromtimestamp(int(path.stat().st_mtime), UTC)


async def test_empty_topic_feed_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/feeds/zebra.atom")
    assert response.status_code == 200
    assert parse_feed(response.content).entries == []


@pytest.mark.parametrize(
    "header",
    [
        "{etag}",
        "W/{etag}",
        '"other", {etag}, "more"',
        '"other",W/{etag}',
        "*",
    ],
)
async def test_if_none_match_gives_304_without_body(client: httpx.AsyncClient, header: str) -> None:
    first = await client.get("/feeds/llm.atom")
    etag = first.headers["etag"]
    response = await client.get(
        "/feeds/llm.atom", headers={"If-None-Match": header.format(etag=etag)}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "public, max-age=300"


@pytest.mark.parametrize("header", ['"nope"', 'W/"nope", "other"', "", "garbage"])
async def test_if_none_match_not_matching_gives_200(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/feeds/llm.atom", headers={"If-None-Match": header})
    assert response.status_code == 200
    assert response.content


async def test_if_modified_since(site: Site, client: httpx.AsyncClient) -> None:
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(site.feeds / "llm.atom", (an_hour_ago, an_hour_ago))
    first = await client.get("/feeds/llm.atom")
    last_modified = first.headers["last-modified"]
    modified = parsedate_to_datetime(last_modified)

    def http_date(when: datetime) -> str:
        return format_datetime(when, usegmt=True)

    async def status(**headers: str) -> int:
        response = await client.get("/feeds/llm.atom", headers=headers)
        if response.status_code == 304:
            assert response.content == b""
            assert response.headers["etag"] == first.headers["etag"]
        return response.status_code

    assert await status(**{"If-Modified-Since": last_modified}) == 304
    assert modified == datetime.fromtimestamp(int(an_hour_ago), UTC)
    later = http_date(modified + timedelta(seconds=30))
    assert await status(**{"If-Modified-Since": later}) == 304
    assert await status(**{"If-Modified-Since": http_date(modified - timedelta(hours=1))}) == 200
    assert await status(**{"If-Modified-Since": "not a date"}) == 200
    assert await status(**{"If-Modified-Since": "FEB 3000000000 0:0 0"}) == 200
    future = http_date(datetime.now(UTC) + timedelta(days=1))
    assert await status(**{"If-Modified-Since": future}) == 200  # invalid: ignored
    # If-None-Match, when present, decides alone.
    assert await status(**{"If-Modified-Since": last_modified, "If-None-Match": '"x"'}) == 200


@given(header=st.text() | st.lists(st.sampled_from(DATE_PARTS), max_size=8).map(" ".join))
@hypothesis_settings(max_examples=300, deadline=None)
def test_validator_headers_never_raise(header: str) -> None:
    now = datetime.now(UTC)
    assert unmodified_since(header, now, now=now) in (True, False)
    assert none_match(header, '"abc"') in (True, False)


async def test_head_has_the_headers_of_get_and_no_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/feeds/llm.atom")
    head = await client.head("/feeds/llm.atom")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]
    conditional = await client.head(
        "/feeds/llm.atom", headers={"If-None-Match": get.headers["etag"]}
    )
    assert conditional.status_code == 304


async def test_changed_feed_gets_a_new_etag(site: Site, client: httpx.AsyncClient) -> None:
    old = await client.get("/feeds/oracle.atom")
    old_titles = [e.title for e in parse_feed(old.content).entries]
    site.ingest_second_dump()
    jobs.run_feeds(site.settings, site.engine)

    response = await client.get(
        "/feeds/oracle.atom", headers={"If-None-Match": old.headers["etag"]}
    )
    assert response.status_code == 200
    assert response.headers["etag"] != old.headers["etag"]
    titles = [e.title for e in parse_feed(response.content).entries]
    assert "Zebra Models for Oracle Training at Scale" in titles
    assert set(old_titles) < set(titles)
    same = await client.get(
        "/feeds/oracle.atom", headers={"If-None-Match": response.headers["etag"]}
    )
    assert same.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/nope.atom",
        "/feeds/LLM.atom",
        "/feeds/ll_m.atom",
        "/feeds/llm.atom.atom",
        "/feeds/.atom",
        "/feeds/stray.atom",  # a file in the folder, but no topic
        "/feeds/..%2fsecret.atom",
        "/feeds/..%2F..%2Fsecret.atom",
        "/feeds/%2e%2e.atom",
        "/feeds/llm%00.atom",
        "/feeds/llm%2f..%2fsecret.atom",
        "/feeds/" + "a" * 65 + ".atom",
        "/feeds/llm.rss",
    ],
)
async def test_unknown_slugs_and_traversal_are_404(
    site: Site, client: httpx.AsyncClient, path: str
) -> None:
    (site.feeds.parent / "secret.atom").write_text("<secret/>", encoding="utf-8")
    (site.feeds / "stray.atom").write_text("<stray/>", encoding="utf-8")
    response = await client.get(path)
    assert response.status_code == 404
    assert b"secret" not in response.content and b"stray" not in response.content


async def test_a_removed_topics_leftover_file_is_404(site: Site, client: httpx.AsyncClient) -> None:
    with session_scope(site.engine) as session:
        store.remove_topic(session, "zebra")
    assert (site.feeds / "zebra.atom").exists()  # until the next feeds run
    assert (await client.get("/feeds/zebra.atom")).status_code == 404


def app_with_rebuild(site: Site, rebuild: FeedRebuild) -> FastAPI:
    app = FastAPI()
    app.include_router(feeds_router(site.settings, site.engine, rebuild=rebuild))
    return app


async def test_a_feed_not_yet_written_is_503_until_the_background_rebuild_writes_it(
    site: Site,
) -> None:
    with session_scope(site.engine) as session:
        store.add_topic(session, "new-one", query="oracle", title="New", now=datetime.now(UTC))
    assert not (site.feeds / "new-one.atom").exists()
    app = create_app(site.settings, site.engine)
    rebuild: FeedRebuild = app.state.feed_rebuild
    async with client_for(app) as http:
        response = await http.get("/feeds/new-one.atom")
        assert response.status_code == 503
        assert 1 <= int(response.headers["retry-after"]) <= 10
        assert rebuild.started == 1
        assert rebuild.wait(timeout=30)
        response = await http.get("/feeds/new-one.atom")
    assert response.status_code == 200
    assert response.content == (site.feeds / "new-one.atom").read_bytes()
    assert len(parse_feed(response.content).entries) > 0
    assert rebuild.started == 1  # the feed was there: nothing woken again


async def test_an_unknown_topic_stays_404_and_wakes_nothing(site: Site) -> None:
    rebuild = FeedRebuild(lambda: pytest.fail("no rebuild for an unknown topic"))
    async with client_for(app_with_rebuild(site, rebuild)) as http:
        assert (await http.get("/feeds/no-such-topic.atom")).status_code == 404
    assert rebuild.started == 0


async def test_a_missing_index_page_is_503_and_rebuilt(site: Site) -> None:
    (site.feeds / "index.html").unlink()
    rebuild = FeedRebuild(partial(jobs.run_feeds, site.settings, site.engine))
    async with client_for(app_with_rebuild(site, rebuild)) as http:
        response = await http.get("/feeds/")
        assert response.status_code == 503 and "retry-after" in response.headers
        assert rebuild.wait(timeout=30)
        assert (await http.get("/feeds/")).status_code == 200
    assert rebuild.started == 1


async def test_concurrent_requests_for_missing_feeds_start_one_rebuild(site: Site) -> None:
    with session_scope(site.engine) as session:
        now = datetime.now(UTC)
        store.add_topic(session, "new-one", query="oracle", title="New", now=now)
        store.add_topic(session, "new-two", query="model", title="Two", now=now)
    release = threading.Event()
    runs: list[str] = []

    def slow_feeds_job() -> None:
        runs.append(threading.current_thread().name)
        assert release.wait(timeout=30)
        jobs.run_feeds(site.settings, site.engine)

    rebuild = FeedRebuild(slow_feeds_job)
    async with client_for(app_with_rebuild(site, rebuild)) as http:
        responses = await asyncio.gather(
            *(http.get(f"/feeds/{slug}.atom") for slug in ("new-one", "new-two", "new-one"))
        )
        assert [r.status_code for r in responses] == [503, 503, 503]
        assert all("retry-after" in r.headers for r in responses)
        # While the run is under way, more requests wait for it rather than start another.
        assert (await http.get("/feeds/new-two.atom")).status_code == 503
        assert rebuild.started == 1
        release.set()
        assert rebuild.wait(timeout=30)
        for slug in ("new-one", "new-two"):
            assert (await http.get(f"/feeds/{slug}.atom")).status_code == 200
    assert rebuild.started == 1 and len(runs) == 1


async def test_a_failed_rebuild_is_logged_and_the_next_request_tries_again(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with session_scope(site.engine) as session:
        store.add_topic(session, "new-one", query="oracle", title="New", now=datetime.now(UTC))
    attempts: list[int] = []

    def failing_feeds_job() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk full")
        jobs.run_feeds(site.settings, site.engine)

    rebuild = FeedRebuild(failing_feeds_job)
    async with client_for(app_with_rebuild(site, rebuild)) as http:
        assert (await http.get("/feeds/new-one.atom")).status_code == 503
        assert rebuild.wait(timeout=30)
        assert "cannot rebuild the feeds: disk full" in caplog.text
        assert (await http.get("/feeds/new-one.atom")).status_code == 503
        assert rebuild.wait(timeout=30)
        assert (await http.get("/feeds/new-one.atom")).status_code == 200
    assert rebuild.started == 2


# OPML


async def test_opml_lists_every_topic(site: Site, client: httpx.AsyncClient) -> None:
    response = await client.get("/feeds/index.opml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/x-opml; charset=utf-8"
    root = ElementTree.fromstring(response.content)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "digestd: topic feeds"
    outlines = root.findall("body/outline")
    assert [
        (o.get("text"), o.get("title"), o.get("xmlUrl"), o.get("htmlUrl")) for o in outlines
    ] == [
        ("Language models", "Language models", f"{BASE}/feeds/llm.atom", f"{BASE}/#topic-llm"),
        ("Oracles", "Oracles", f"{BASE}/feeds/oracle.atom", f"{BASE}/#topic-oracle"),
        ("Zebras", "Zebras", f"{BASE}/feeds/zebra.atom", f"{BASE}/#topic-zebra"),
    ]
    assert all(o.get("type") == "rss" for o in outlines)
    assert outlines[1].get("description") == "Papers matching: title:oracle"

    etag = response.headers["etag"]
    again = await client.get("/feeds/index.opml", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    with session_scope(site.engine) as session:
        store.add_topic(
            session, "more", query="oracle", description="More <oracles>", now=datetime.now(UTC)
        )
    changed = await client.get("/feeds/index.opml", headers={"If-None-Match": etag})
    more = ElementTree.fromstring(changed.content).findall("body/outline")[1]
    assert (more.get("text"), more.get("description")) == ("more", "More <oracles>")
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert len(ElementTree.fromstring(changed.content).findall("body/outline")) == 4


async def test_hostile_topic_titles_give_well_formed_xml(
    site: Site, client: httpx.AsyncClient
) -> None:
    with session_scope(site.engine) as session:
        store.add_topic(session, "evil", query="oracle", title=HOSTILE_TITLE, now=datetime.now(UTC))
    jobs.run_feeds(site.settings, site.engine)
    clean = xml_safe(HOSTILE_TITLE).strip()

    opml = await client.get("/feeds/index.opml")
    outline = next(
        o
        for o in ElementTree.fromstring(opml.content).iter("outline")
        if o.get("xmlUrl", "").endswith("/evil.atom")
    )
    assert outline.get("text") == outline.get("title") == clean
    assert b"<b>" not in opml.content and b"</opml>" not in opml.content[:-10]

    feed = await client.get("/feeds/evil.atom")
    assert html.unescape(parse_feed(feed.content).feed.title) == f"digestd: {clean}"
    ElementTree.fromstring(feed.content)


# Private feeds


@dataclass
class Sent:
    alice: int
    bob: int


async def send_digests(site: Site, *, now: datetime | None = None) -> None:
    report = await jobs.run_send(site.settings, site.engine, now=now, ignore_schedule=True)
    assert report.count("sent") >= 1, report


@pytest.fixture
async def sent(site: Site) -> Sent:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with session_scope(site.engine) as session:
        alice = store.add_subscriber(
            session, "alice@example.org", queries=["language model"], send_hour=0, now=yesterday
        )
        bob = store.add_subscriber(
            session, "bob@example.org", topic_slugs=["oracle"], send_hour=0, now=yesterday
        )
        store.add_subscriber(session, "carol@example.org", queries=["zebra"], now=yesterday)
    await send_digests(site)
    assert alice.id is not None and bob.id is not None
    return Sent(alice.id, bob.id)


def feed_path(site: Site, purpose: str, subscriber_id: int, email: str) -> str:
    url = link_url(BASE, site.settings.link_secret(), purpose, subscriber_id, email)
    return urlsplit(url).path


def sent_rows(site: Site, subscriber_id: int) -> list[tuple[Paper, Delivery]]:
    with session_scope(site.engine) as session:
        rows = session.exec(
            select(Paper, Delivery)
            .join(SentPaper, col(SentPaper.paper_id) == Paper.id)
            .join(Delivery, col(Delivery.id) == SentPaper.delivery_id)
            .where(SentPaper.subscriber_id == subscriber_id)
        ).all()
    return [(paper, delivery) for paper, delivery in rows]


async def test_private_feed_holds_exactly_what_was_sent(
    site: Site, sent: Sent, client: httpx.AsyncClient
) -> None:
    rows = sent_rows(site, sent.alice)
    assert rows
    response = await client.get(feed_path(site, "feed", sent.alice, "alice@example.org"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.headers["cache-control"].startswith("private")
    assert "etag" in response.headers
    parsed = parse_feed(response.content)
    assert len(parsed.entries) == len(rows) <= PRIVATE_FEED_LIMIT
    by_id = {entry_id(paper.uid): (paper, delivery) for paper, delivery in rows}
    assert {e.id for e in parsed.entries} == set(by_id)
    for entry in parsed.entries:
        paper, delivery = by_id[entry.id]
        assert entry.title == paper.title
        assert entry.link == paper_url(arxiv_id=paper.arxiv_id, title=paper.title)
        assert delivery.sent_at is not None
        # Published on the paper's own date, updated at its own instant (not the send time,
        # which every paper of a digest shares).
        assert entry.published == f"{paper.dump_date.isoformat()}T00:00:00+00:00"
        assert entry.updated == store.aware(paper.updated_at).isoformat()
    # One digest: its papers in the order it ranked them.
    (delivery,) = {d.id: d for _, d in rows}.values()
    ranked = [int(p) for p in delivery.paper_ids.split(",")]
    ids = {entry_id(paper.uid): paper.id for paper, _ in rows}
    assert [ids[e.id] for e in parsed.entries] == [p for p in ranked if p in ids.values()]

    bob = parse_feed(
        (await client.get(feed_path(site, "feed", sent.bob, "bob@example.org"))).content
    )
    assert {e.id for e in bob.entries} == {entry_id(p.uid) for p, _ in sent_rows(site, sent.bob)}
    assert {e.id for e in bob.entries} != {e.id for e in parsed.entries}


async def test_private_feed_conditional_requests(
    site: Site, sent: Sent, client: httpx.AsyncClient
) -> None:
    path = feed_path(site, "feed", sent.alice, "alice@example.org")
    first = await client.get(path)
    again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = await client.head(path)
    assert head.status_code == 200 and head.content == b""


async def test_private_feed_grows_newest_digest_first(
    site: Site, sent: Sent, client: httpx.AsyncClient
) -> None:
    path = feed_path(site, "feed", sent.bob, "bob@example.org")
    before = await client.get(path)
    old_ids = [e.id for e in parse_feed(before.content).entries]
    site.ingest_second_dump()
    await send_digests(site, now=datetime.now(UTC) + timedelta(days=1))
    after = await client.get(path, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    entries = parse_feed(after.content).entries
    new_ids = [e.id for e in entries if e.id not in old_ids]
    assert len(new_ids) == 2
    assert [e.id for e in entries] == new_ids + old_ids
    assert entries[0].updated > entries[-1].updated


async def test_paused_and_unsubscribed_subscribers_keep_their_feed(
    site: Site, sent: Sent, client: httpx.AsyncClient
) -> None:
    path = feed_path(site, "feed", sent.alice, "alice@example.org")
    before = (await client.get(path)).content
    with session_scope(site.engine) as session:
        store.set_active(session, "alice@example.org", False)
    assert (await client.get(path)).content == before
    from digestd.store import signup

    with session_scope(site.engine) as session:
        signup.unsubscribe(session, sent.alice, how="link", now=datetime.now(UTC))
    assert (await client.get(path)).content == before


async def test_bad_tokens_are_404(site: Site, sent: Sent, client: httpx.AsyncClient) -> None:
    secret = site.settings.link_secret()
    good = feed_path(site, "feed", sent.alice, "alice@example.org")
    token = good.removeprefix("/feeds/me/").removesuffix(".atom")
    # A character inside the signature (the last one may be padding bits that decode alike).
    middle = len(token) - 10
    flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    bad_paths = [
        f"/feeds/me/{flipped}.atom",
        f"/feeds/me/{make_token('another secret', 'feed', sent.alice, 'alice@example.org')}.atom",
        # Signed for alice's id but bob's address: foreign.
        f"/feeds/me/{make_token(secret, 'feed', sent.alice, 'bob@example.org')}.atom",
        f"/feeds/me/{make_token(secret, 'feed', 999, 'alice@example.org')}.atom",
        feed_path(site, "unsubscribe", sent.alice, "alice@example.org").replace(
            "/unsubscribe/", "/feeds/me/"
        )
        + ".atom",
        f"/feeds/me/{make_token(secret, 'manage', sent.alice, 'alice@example.org')}.atom",
        "/feeds/me/x.atom",
        "/feeds/me/.atom",
        "/feeds/me/" + "A" * 5000 + ".atom",
        "/feeds/me/..%2f..%2fsecret.atom",
    ]
    bodies = set()
    for path in bad_paths:
        response = await client.get(path)
        assert response.status_code == 404, path
        bodies.add(response.content)
    unknown = await client.get("/feeds/nope.atom")
    assert bodies == {unknown.content}  # a bad token reads like an unknown feed

    assert (await client.get(good)).status_code == 200
    with session_scope(site.engine) as session:
        store.remove_subscriber(session, "alice@example.org")
    assert (await client.get(good)).status_code == 404


async def test_sent_entries_caps_at_the_newest(site: Site, sent: Sent) -> None:
    site.ingest_second_dump()
    await send_digests(site, now=datetime.now(UTC) + timedelta(days=1))
    with session_scope(site.engine) as session:
        everything = sent_entries(session, sent.bob, limit=1000)
        newest = sent_entries(session, sent.bob, limit=2)
        newest_digest = session.exec(
            select(Delivery)
            .where(Delivery.subscriber_id == sent.bob, Delivery.status == "sent")
            .order_by(col(Delivery.id).desc())
        ).first()
    assert newest_digest is not None
    assert len(everything) > 2 and newest == everything[:2]
    assert {e.sent_at for e in newest} == {store.aware(newest_digest.sent_at)}  # type: ignore[arg-type]


# Health


async def test_healthz_reports_the_last_ingest_and_send(
    site: Site, client: httpx.AsyncClient
) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    with session_scope(site.engine) as session:
        ingested = session.exec(select(func.max(Dump.ingested_at))).one()
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "last_ingest": store.aware(ingested).isoformat(),
        "last_send": None,
    }
    with session_scope(site.engine) as session:
        store.add_subscriber(
            session,
            "d@example.org",
            queries=["model"],
            send_hour=0,
            now=datetime.now(UTC) - timedelta(days=1),
        )
    await send_digests(site)
    with session_scope(site.engine) as session:
        last_send = session.exec(select(func.max(Delivery.sent_at))).one()
    body = (await client.get("/healthz")).json()
    assert body["last_send"] == store.aware(last_send).isoformat()
    assert datetime.fromisoformat(body["last_send"]) >= datetime.fromisoformat(body["last_ingest"])


async def test_the_site_answers_503_naming_a_source_failing_too_long(config_file: Path) -> None:
    settings = dataclasses.replace(
        load_settings(config_file, environ={}),
        sources=(SourceSpec(name="arxiv-cl", url="https://rss.arxiv.org/rss/cs.CL"),),
    )
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with session_scope(engine) as session:
        store.record_fetch_failure(
            session,
            "arxiv-cl",
            url="https://rss.arxiv.org/rss/cs.CL",
            now=datetime.now(UTC) - timedelta(hours=settings.fetching.stale_hours + 1),
            reason="HTTP 503 Service Unavailable after 4 tries",
        )
    async with client_for(create_app(settings, engine)) as http:
        response = await http.get("/healthz")
    engine.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["stale_sources"] == ["arxiv-cl"] and "arxiv-cl" in body["problem"]
    assert body["sources"]["arxiv-cl"]["last_error"].startswith("HTTP 503")


@pytest.mark.slow
async def test_healthz_on_an_empty_database(config_file: Path) -> None:
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    async with client_for(bare_app(settings, engine)) as http:
        response = await http.get("/healthz")
    engine.dispose()
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "last_ingest": None,
        "last_send": None,
    }


async def assert_unhealthy(engine: Engine, settings: Settings, reason: str) -> None:
    async with client_for(bare_app(settings, engine)) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "error"
    assert reason in body["database"]
    assert "\n" not in body["database"] and "Traceback" not in body["database"]


async def test_healthz_503_when_the_database_file_is_gone(site: Site) -> None:
    database = Path(site.settings.database_url.removeprefix("sqlite:///"))
    async with client_for(site.app) as http:
        assert (await http.get("/healthz")).status_code == 200  # the pool holds a connection
    database.unlink()
    await assert_unhealthy(site.engine, site.settings, "database file not found")
    assert not database.exists()  # not recreated as an empty file


async def test_healthz_503_when_the_folder_is_missing(site: Site) -> None:
    engine = make_engine(f"sqlite:///{site.tmp_path / 'missing' / 'digestd.db'}")
    await assert_unhealthy(engine, site.settings, "database file not found")
    assert not (site.tmp_path / "missing").exists()


async def test_healthz_503_when_the_file_is_not_a_database(site: Site) -> None:
    junk = site.tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all\n" * 100)
    await assert_unhealthy(make_engine(f"sqlite:///{junk}"), site.settings, "not a database")
    empty = site.tmp_path / "empty.db"
    empty.touch()
    await assert_unhealthy(make_engine(f"sqlite:///{empty}"), site.settings, "no such table")


async def test_healthz_503_when_postgresql_is_down(site: Site) -> None:
    engine = make_engine(f"postgresql+psycopg://digestd@127.0.0.1:{free_port()}/digestd")
    await assert_unhealthy(engine, site.settings, "127.0.0.1")


async def test_feeds_when_the_database_is_unreachable(site: Site) -> None:
    """Topic feed files outlive a database outage; everything built from the database is 503."""
    engine = make_engine(f"sqlite:///{site.tmp_path / 'missing' / 'digestd.db'}")
    async with client_for(bare_app(site.settings, engine)) as http:
        feed = await http.get("/feeds/llm.atom")
        assert feed.status_code == 200
        assert feed.content == (site.feeds / "llm.atom").read_bytes()
        (site.feeds / "stray.atom").write_text("<stray/>", encoding="utf-8")
        assert (await http.get("/feeds/stray.atom")).status_code == 503
        assert (await http.get("/feeds/nope.atom")).status_code == 503
        assert (await http.get("/feeds/index.opml")).status_code == 503
        token = make_token(site.settings.link_secret(), "feed", 1, "a@example.org")
        assert (await http.get(f"/feeds/me/{token}.atom")).status_code == 503


def test_openapi_describes_every_route(site: Site) -> None:
    paths = site.app.openapi()["paths"]
    assert set(paths) == {
        "/feeds/",
        "/feeds/index.html",
        "/feeds/index.opml",
        "/feeds/me/{token}.atom",
        "/feeds/{slug}.atom",
        "/healthz",
    }
    slug = paths["/feeds/{slug}.atom"]["get"]
    assert [p["name"] for p in slug["parameters"]] == ["slug"]
    assert {"200", "304", "404"} <= set(slug["responses"])
    assert "application/atom+xml" in slug["responses"]["200"]["content"]
    assert set(paths["/feeds/{slug}.atom"]) == {"get"}  # HEAD is answered wherever GET is
    assert "503" in paths["/healthz"]["get"]["responses"]
