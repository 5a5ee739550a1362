"""The "View in browser" page (/digest/<token>) and what the planner puts into a digest for it:
the signed links, the language, the counts and the subscriber's order. Runs on a SQLite file
and, where a server is at hand, on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import read_scope, session_scope
from digestd.digest import Digest
from digestd.jobs.plan_job import PreparedDigest, prepare_digests, stored_digest
from digestd.models import Dump, Follow, Paper
from digestd.runtime import Runtime
from digestd.store.signup import unsubscribe
from digestd.tokens import make_token, read_claim
from digestd.web.digest_page import DIGEST_PAGE_POLICY, with_robots_meta
from tests.support.databases import engine_fixture  # noqa: F401  (the engine fixture)
from tests.support.web_server import running_app
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture, for the postgres runs)

T0 = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
HOSTILE = 'Sparse <i>routers</i> & "friends" for tiny models'
# (title, abstract, published, upvotes): all match "sparse"; relevance, newest and upvotes
# each give another order.
MATCHING = [
    (HOSTILE, "Sparse sparse sparse experts: sparse routing.", date(2026, 1, 1), 5),
    ("Sparse attention at scale", "We study attention.", date(2026, 6, 10), None),
    ("Mixture of sparse experts", "Experts are sparse.", date(2026, 3, 1), 40),
]
OTHER = [
    ("Protein folding with diffusion", "Proteins fold.", date(2026, 6, 1), 3),
    ("Graph neural networks for chemistry", "Molecules.", date(2026, 6, 2), 1),
]
TABLES = ("subscriber", "profile", "follow", "delivery", "sent_paper", "paper", "topic")


def settings_of(config_file: Path) -> Settings:
    return load_settings(config_file, environ={})


def add_papers(
    engine: Engine, papers: list[tuple[str, str, date, int | None]], at: datetime
) -> None:
    with session_scope(engine) as session:
        dump = Dump(
            sha256=f"{at.isoformat()}-{len(papers)}".ljust(64, "0")[:64],
            file_name="test.txt",
            dump_date=at.date(),
            ingested_at=at,
            paper_count=len(papers),
            new_count=len(papers),
        )
        session.add(dump)
        session.flush()
        assert dump.id is not None
        for number, (title, abstract, published, upvotes) in enumerate(papers):
            uid = f"t:{dump.id}-{number}"
            session.add(
                Paper(
                    uid=uid,
                    title_key=uid,
                    title=title,
                    abstract=abstract,
                    published=published,
                    upvotes=upvotes,
                    dump_id=dump.id,
                    dump_date=at.date(),
                    first_seen=at,
                    updated_at=at + timedelta(microseconds=1000 * dump.id + number),
                )
            )


def add_reader(
    engine: Engine,
    email: str,
    *,
    queries: list[str],
    order: str = "relevance",
    language: str = "en",
) -> int:
    with session_scope(engine) as session:
        added = store.add_subscriber(
            session, email, queries=queries, send_hour=0, now=T0 - timedelta(days=1)
        )
        added.digest_order = order
        added.language = language
        session.flush()
        assert added.id is not None
        return added.id


def follow(engine: Engine, subscriber_id: int, slug: str, query: str) -> None:
    with session_scope(engine) as session:
        store.add_topic(session, slug, query=query, title=slug.title(), now=T0 - timedelta(days=2))
        topic = store.topic_by_slug(session, slug)
        assert topic.id is not None
        session.add(Follow(subscriber_id=subscriber_id, topic_id=topic.id))


@pytest.fixture(name="stocked")
def stocked_fixture(engine: Engine) -> Engine:
    """Three matching and two other papers stored an hour before T0, and one matching paper
    stored long before any window."""
    add_papers(
        engine, [("Sparse old news", "sparse", date(2025, 1, 1), 99)], T0 - timedelta(days=60)
    )
    add_papers(engine, MATCHING + OTHER, T0 - timedelta(hours=1))
    return engine


def planned(settings: Settings, engine: Engine) -> dict[str, PreparedDigest]:
    found = prepare_digests(settings, engine, now=T0, ignore_schedule=True)
    return {item.email: item for item in found}


def titles(digest: Digest) -> list[str]:
    return [entry.title for entry in digest.entries]


def without_links(digest: Digest) -> Digest:
    # Signed links carry the time they were made: the same link made twice differs.
    return dataclasses.replace(
        digest, unsubscribe_url="", manage_url=None, view_url=None, pause_url=None
    )


# The planner


def test_the_planner_fills_links_language_counts_and_the_order(
    config_file: Path, stocked: Engine
) -> None:
    settings = settings_of(config_file)
    anna = add_reader(stocked, "anna@example.org", queries=["sparse", "router"], language="de")
    follow(stocked, anna, "proteins", "protein")
    add_reader(stocked, "ben@example.org", queries=["sparse"], order="newest")
    add_reader(stocked, "cleo@example.org", queries=["sparse"], order="upvotes")
    digests = planned(settings, stocked)
    first = digests["anna@example.org"]
    digest = first.digest
    # Five papers were stored in the window (the old one is before it); 2 queries + 1 topic.
    assert (digest.new_count, digest.query_count, digest.language) == (5, 3, "de")
    assert digests["ben@example.org"].digest.query_count == 1
    assert digests["ben@example.org"].digest.language == "en"
    secret, base = settings.link_secret(), settings.feeds.base_url
    assert digest.view_url is not None and digest.pause_url is not None
    view_token = digest.view_url.removeprefix(f"{base}/digest/")
    pause_token = digest.pause_url.removeprefix(f"{base}/pause/")
    assert "/" not in view_token and "/" not in pause_token

    def email_of(subscriber_id: int) -> str | None:
        return "anna@example.org" if subscriber_id == anna else None

    view = read_claim(secret, "digest", view_token, email_of=email_of)
    assert view is not None and (view.subscriber_id, view.reference) == (anna, first.key)
    pause = read_claim(secret, "pause", pause_token, email_of=email_of)
    assert pause is not None and (pause.subscriber_id, pause.reference) == (anna, None)
    # A view link is no pause link, nor the other way round.
    assert read_claim(secret, "pause", view_token, email_of=email_of) is None
    # The protein topic's paper and the sparse ones.
    assert "Protein folding with diffusion" in titles(digest)
    scores = [entry.score for entry in digest.entries]
    assert scores == sorted(scores, reverse=True)
    sparse = [t for t, *_ in MATCHING]
    assert titles(digests["ben@example.org"].digest) == [sparse[1], sparse[2], sparse[0]]
    assert titles(digests["cleo@example.org"].digest) == [sparse[2], sparse[0], sparse[1]]


def test_a_resumed_digest_keeps_the_subscribers_order(config_file: Path, stocked: Engine) -> None:
    settings = settings_of(config_file)
    ben = add_reader(stocked, "ben@example.org", queries=["sparse"], order="newest")
    first = planned(settings, stocked)["ben@example.org"]
    with session_scope(stocked) as session:
        # The digest was put into the outbox (papers in relevance order), not sent yet.
        store.add_planned(
            session,
            [
                store.PlannedRow(
                    ben, first.key, first.message_id, sorted(first.planned.paper_ids), T0
                )
            ],
            now=T0,
        )
    again = planned(settings, stocked)["ben@example.org"]
    assert again.delivery_id is not None and again.key == first.key
    assert titles(again.digest) == titles(first.digest)


# The page


def send(settings: Settings, engine: Engine) -> jobs.SendReport:
    return asyncio.run(jobs.run_send(settings, engine, now=T0, ignore_schedule=True))


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with read_scope(engine) as session:
        return {
            table: sorted(
                (tuple(row) for row in session.execute(text(f"SELECT * FROM {table}"))), key=repr
            )
            for table in TABLES
        }


def path_of(url: str | None, settings: Settings) -> str:
    assert url is not None
    return url.removeprefix(settings.feeds.base_url.rstrip("/"))


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_view_link_shows_the_mailed_digest_to_its_reader_only(
    config_file: Path, stocked: Engine
) -> None:
    settings = settings_of(config_file)
    anna = add_reader(stocked, "anna@example.org", queries=["sparse"])
    ben = add_reader(stocked, "ben@example.org", queries=["sparse"], order="upvotes")
    cleo = add_reader(stocked, "cleo@example.org", queries=["nothing-matches-this"])
    digests = planned(settings, stocked)
    report = send(settings, stocked)
    assert report.count("sent") == 2
    mails = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in settings.folder("outbox").glob("*.eml")
    ]
    assert sorted(str(mail["To"]) for mail in mails) == ["anna@example.org", "ben@example.org"]
    key = digests["anna@example.org"].key
    with read_scope(stocked) as session:
        assert [(d.digest_key, d.status) for d in store.deliveries_of(session, anna)] == [
            (key, "sent")
        ]
    # The page's digest is the one the mail was made from.
    runtime = Runtime(settings, stocked)
    rebuilt = stored_digest(settings, stocked, anna, key, runtime=runtime)
    assert rebuilt is not None
    assert without_links(rebuilt) == without_links(digests["anna@example.org"].digest)
    before = snapshot(stocked)
    secret = settings.link_secret()
    with running_app(settings, stocked) as base, httpx.Client(base_url=base, timeout=10) as http:
        page = http.get(path_of(digests["anna@example.org"].digest.view_url, settings))
        assert page.status_code == 200, page.text[:300]
        assert page.headers["x-robots-tag"] == "noindex, nofollow"
        assert page.headers["cache-control"] == "private, no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["content-security-policy"] == DIGEST_PAGE_POLICY
        head = page.text.split("</head>", 1)[0]
        assert '<meta name="robots" content="noindex, nofollow">' in head
        shown = visible_text(page.text)
        for title, *_ in MATCHING:
            assert title in shown
        assert "Protein folding" not in shown and "Sparse old news" not in shown
        # The hostile title is text, never markup.
        assert "<i>routers</i>" not in page.text and "&lt;i&gt;" in page.text
        assert "anna@example.org" in shown and "ben@example.org" not in shown
        # Ben's own link shows Ben's digest, in his order.
        own = http.get(path_of(digests["ben@example.org"].digest.view_url, settings))
        assert own.status_code == 200
        assert "ben@example.org" in visible_text(own.text)
        assert "anna@example.org" not in visible_text(own.text)

        def status(subscriber_id: int, email: str, reference: str, purpose: str = "digest") -> int:
            token = make_token(secret, purpose, subscriber_id, email, reference=reference)
            return http.get(f"/digest/{token}").status_code

        valid = path_of(digests["anna@example.org"].digest.view_url, settings)
        forged = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
        missing = http.get(forged)
        assert missing.status_code == 404 and "Page not found" in missing.text
        assert status(anna, "anna@example.org", key, purpose="manage") == 404
        assert status(anna, "ben@example.org", key) == 404  # foreign: Anna's id, Ben's address
        assert status(cleo, "cleo@example.org", key) == 404  # her digest was empty
        assert status(anna, "anna@example.org", "2020-01-01") == 404  # no digest of that key
        assert status(anna, "anna@example.org", key) == 200
        assert snapshot(stocked) == before  # nothing a GET did was recorded

        with session_scope(stocked) as session:
            unsubscribe(session, ben, how="web", now=T0)
            store.remove_subscriber(session, "anna@example.org")
        assert status(anna, "anna@example.org", key) == 404
        assert status(ben, "ben@example.org", key) == 404


def test_a_digest_token_without_a_key_is_not_found(config_file: Path, engine: Engine) -> None:
    settings = settings_of(config_file)
    anna = add_reader(engine, "anna@example.org", queries=["sparse"])
    token = make_token(settings.link_secret(), "digest", anna, "anna@example.org")
    with running_app(settings, engine) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get(f"/digest/{token}").status_code == 404
        assert http.get("/digest/").status_code in (307, 404)


def test_papers_removed_since_are_left_out_of_the_page(config_file: Path, stocked: Engine) -> None:
    settings = settings_of(config_file)
    anna = add_reader(stocked, "anna@example.org", queries=["sparse"])
    key = planned(settings, stocked)["anna@example.org"].key
    assert send(settings, stocked).count("sent") == 1
    with session_scope(stocked) as session:
        gone = session.exec(select(Paper).where(Paper.title == MATCHING[1][0])).one()
        session.execute(text("DELETE FROM sent_paper WHERE paper_id = :id"), {"id": gone.id})
        session.delete(gone)
    rebuilt = stored_digest(settings, stocked, anna, key, runtime=Runtime(settings, stocked))
    assert rebuilt is not None
    assert titles(rebuilt) == [MATCHING[0][0], MATCHING[2][0]]


def test_the_robots_meta_goes_into_the_head_once() -> None:
    page = '<!DOCTYPE html>\n<html><HEAD lang="en"><title>x</title></head><body></body></html>'
    marked = with_robots_meta(page)
    assert marked.index('<meta name="robots"') > marked.index("<HEAD")
    assert marked.index('<meta name="robots"') < marked.index("</head>")
    assert with_robots_meta(marked) == marked
    own = '<html><head><meta name="robots" content="none"></head></html>'
    assert with_robots_meta(own) == own
    assert with_robots_meta("<p>bare</p>").startswith('<meta name="robots"')
