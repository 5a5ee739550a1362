"""The pages over HTTP: headers and escaping, the preference page, the live query check and
the front page (tests/support/web_server.py runs the app under uvicorn)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from digestd import jobs, store
from digestd.db import session_scope
from digestd.models import Paper
from digestd.tokens import read_token
from digestd.web.security import CONTENT_SECURITY_POLICY
from tests.support.web_pages import (
    add_papers,
    add_subscriber,
    add_topic,
    client,
    csrf_of,
    h1,
    subscribe,
    subscriber,
    subscriber_rows,
    token,
)
from tests.support.web_server import (
    Clock,
    WebSite,
    web_site_fixture,  # noqa: F401  (the web_site fixture)
)

# Headers, escaping


def test_security_headers_on_every_response(web_site: WebSite) -> None:
    site = web_site
    bob_id = add_subscriber(site, "bob@example.org")
    with client(site) as http:
        responses = [
            http.get("/"),
            http.get("/confirm/x"),
            http.get("/unsubscribe/x"),
            http.get("/manage/x"),
            http.get(f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"),
            http.get("/static/site.css"),
            http.get("/static/site.js"),
            http.get("/api/query-check?queries=llm"),
            http.get("/no/such/page"),
            http.post("/subscribe", data={}),
            http.get("/openapi.json"),
        ]
    for response in responses:
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, response.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert responses[-2].status_code == 403
    for response in responses[:5]:
        # The policy allows no inline script or style: the pages must not need any.
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
        assert " style=" not in response.text and "<style" not in response.text
        assert response.headers["cache-control"] == "no-store"
    assert responses[5].headers["content-type"].startswith("text/css")


def test_hostile_text_is_escaped(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "evil", "attack", '<script>alert("topic")</script>')
    add_papers(
        site,
        date(2026, 3, 14),
        [('<script>alert("paper")</script><img src=x onerror=alert(1)> attack', "An attack.")],
    )
    with client(site) as http:
        front = http.get("/").text
        assert "<script>alert" not in front and "<img src=x" not in front
        assert "&lt;script&gt;alert(&#34;topic&#34;)&lt;/script&gt;" in front
        assert "&lt;img src=x onerror=alert(1)&gt; attack" in front
        hostile = '"><script>alert(1)</script>'
        answer = subscribe(http, hostile + "@example.org", queries=f"llm\n{hostile}(")
        assert answer.status_code == 400
        assert "<script>alert(1)" not in answer.text
        assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@example.org" in answer.text
        check = http.get("/api/query-check", params={"queries": hostile + "("}).json()
        assert check["valid"] is False


# The preference page


def test_the_manage_page_shows_the_current_preferences(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    add_topic(site, "vision", "image", "Vision")
    add_papers(site, date(2026, 3, 14), [("A language model", "x"), ("Another one", "y")])
    bob_id = add_subscriber(
        site,
        "bob@example.org",
        queries=["language model", "diffusion"],
        topic_slugs=["vision"],
        frequency="weekly",
        send_hour=18,
        timezone="Europe/Paris",
        weekday="fri",
    )
    with session_scope(site.engine) as session:
        store.set_active(session, "bob@example.org", False)
    page = httpx.get(f"{site.base_url}/manage/{token(site, 'manage', bob_id, 'bob@example.org')}")
    assert page.status_code == 200
    text = page.text
    assert '<form class="form" id="preferences" method="post">' in text
    assert ">language model\ndiffusion</textarea>" in text
    assert '<input type="checkbox" name="topics" value="vision" checked>' in text
    assert '<input type="checkbox" name="topics" value="llm">' in text
    assert '<option value="weekly" selected>' in text
    assert '<option value="18" selected>' in text
    assert "<option selected>Europe/Paris</option>" in text
    assert '<input type="checkbox" name="paused" value="yes" checked>' in text
    # The private feed link: a feed token of Bob's (tokens carry their signing second, so the
    # link is read back, not rebuilt).
    feed = re.search(rf'href="{re.escape(site.base_url)}/feeds/me/([^"]+)\.atom"', text)
    assert feed is not None
    assert (
        read_token(
            site.settings.link_secret(),
            "feed",
            feed.group(1),
            email_of={bob_id: "bob@example.org"}.get,
        )
        == bob_id
    )
    assert re.search(r'id="query-check"[^>]*>This would have matched 1 paper in', text)
    assert "Save preferences</button>" in text


def test_saving_preferences_changes_the_database(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    add_topic(site, "vision", "image", "Vision")
    bob_id = add_subscriber(site, "bob@example.org", topic_slugs=["llm"])
    url = f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"
    form = {
        "queries": "diffusion\n\n  reasoning  ",
        "topics": ["vision"],
        "frequency": "weekly",
        "send_hour": "18",
        "timezone": "Europe/Paris",
        "weekday": "fri",
        "paused": "yes",
        "revised_papers": "yes",
    }
    with client(site) as http:
        saved = http.post(url, data={**form, "csrf": csrf_of(http, url)})
        assert saved.status_code == 200
        assert "Preferences saved" in saved.text
        assert '<input type="checkbox" name="revised_papers" value="yes" checked>' in saved.text
        assert ">diffusion\nreasoning</textarea>" in saved.text
        with session_scope(site.engine) as session:
            bob = store.subscriber_by_email(session, "bob@example.org")
            assert store.queries_by_subscriber(session)[bob_id] == ["diffusion", "reasoning"]
            assert [t.slug for t in store.topics_by_subscriber(session)[bob_id]] == ["vision"]
            assert (bob.frequency, bob.send_hour, bob.timezone, bob.weekday, bob.active) == (
                "weekly",
                18,
                "Europe/Paris",
                "fri",
                False,
            )
            assert bob.revised_papers is True
        del form["paused"]
        del form["revised_papers"]
        assert http.post(url, data={**form, "csrf": csrf_of(http, url)}).status_code == 200
    resumed = subscriber(site, "bob@example.org")
    assert resumed is not None and resumed.active is True
    assert resumed.revised_papers is False


@pytest.mark.slow
def test_a_bad_preference_is_a_400_that_keeps_the_typed_values(web_site: WebSite) -> None:
    site = web_site
    bob_id = add_subscriber(site, "bob@example.org")
    url = f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"
    before = subscriber_rows(site)
    form = {"queries": "diffusion\n(llm", "frequency": "weekly", "send_hour": "5"}
    form |= {"timezone": "Asia/Tokyo", "weekday": "sat"}
    with client(site) as http:
        answer = http.post(url, data={**form, "csrf": csrf_of(http, url)})
    assert answer.status_code == 400
    assert re.search(r'</textarea>\s*<p class="error" id="queries-error">Line 2', answer.text)
    assert ">diffusion\n(llm</textarea>" in answer.text
    assert "<option selected>Asia/Tokyo</option>" in answer.text
    assert '<option value="sat" selected>' in answer.text
    assert "Preferences saved" not in answer.text
    assert subscriber_rows(site) == before


# The live query check


def test_the_query_check_counts_what_match_queries_counts(web_site: WebSite) -> None:
    site = web_site
    newest = date(2026, 3, 14)
    add_papers(site, newest - timedelta(days=10), [("Language model of old", "x")])
    add_papers(
        site,
        newest - timedelta(days=3),
        [("Diffusion for images", "a"), ("A language model", "b")],
    )
    add_papers(
        site,
        newest,
        [("Large language model reasoning", "c"), ("Diffusion language model", "d")],
    )
    lines = ["language model", "diffusion", "nothing-matches-this"]
    with session_scope(site.engine) as session:
        recent = store.papers_of_last_days(session, 7)
    expected = jobs.match_queries(dict(enumerate(lines)), recent)
    union = {p for number in range(len(lines)) for p in expected.papers(number)}
    assert len(union) == 4  # the old paper is out of the window

    answer = httpx.get(f"{site.base_url}/api/query-check", params={"queries": "\n".join(lines)})
    assert answer.status_code == 200
    assert answer.json() == {
        "valid": True,
        "error": "",
        "matches": len(union),
        "days": 7,
        "lines": [expected.count(number) for number in range(len(lines))],
    }
    assert answer.json()["lines"] == [3, 2, 0]

    broken = httpx.get(f"{site.base_url}/api/query-check", params={"queries": "llm AND"})
    assert broken.status_code == 200
    assert broken.json()["valid"] is False and "AND" in broken.json()["error"]
    too_long = httpx.get(f"{site.base_url}/api/query-check", params={"queries": "a " * 5000})
    assert too_long.status_code == 200
    assert too_long.json()["valid"] is False and "too long" in too_long.json()["error"]
    empty = httpx.get(f"{site.base_url}/api/query-check").json()
    assert empty == {"valid": True, "error": "", "matches": 0, "days": 7, "lines": []}


# The front page


def test_the_front_page_lists_topics_feeds_and_newest_papers(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models", "Models of <language> & more")
    add_papers(site, date(2026, 3, 13), [("Old language model", "x")])
    add_papers(
        site,
        date(2026, 3, 14),
        [(f"Language model number {n}", "x") for n in range(6)] + [("Unrelated", "y")],
    )
    text = httpx.get(site.base_url + "/").text
    assert '<form class="form" id="subscribe" method="post" action="/subscribe" novalidate>' in text
    assert '<input class="input" id="email" name="email" type="email"' in text
    assert '<a class="feed-link" href="/feeds/llm.atom">' in text
    assert '<code class="query">language model</code>' in text
    assert '<p class="description">Models of &lt;language&gt; &amp; more</p>' in text
    shown = re.findall(r'class="more-link" href="[^"]*">([^<]*)</a>', text)
    assert shown == [f"Language model number {n}" for n in (5, 4, 3, 2, 1)]
    assert "Subscribe</button>" in text
    assert "data-detect-timezone" in text
    assert "<option selected>UTC</option>" in text


def test_the_front_page_shows_each_papers_own_page_and_byline(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    add_papers(site, date(2026, 3, 13), [("A dumped language model", "x")])
    with session_scope(site.engine) as session:
        paper = session.exec(select(Paper)).one()
        paper.arxiv_id, paper.version = "2603.01234", 2
        paper.abs_url = "https://arxiv.org/abs/2603.01234v2"
        paper.authors = ["Ada Lovelace", "Émilie du Châtelet", "<b>Bold</b>", "Alan Turing"]
        paper.categories = ["cs.CL", "cs.LG"]
        paper.published = date(2026, 3, 12)
        paper.upvotes = 0
    add_papers(site, date(2026, 3, 14), [("A bare language model", "y")])
    text = httpx.get(site.base_url + "/").text
    items = re.findall(r'<li class="more-item">(.*?)</li>', text)
    assert items == [
        '<a class="more-link" href="https://arxiv.org/search/?searchtype=title&amp;query=A+bare+'
        'language+model">A bare language model</a><span class="byline">Mar 14, 2026</span>',
        '<a class="more-link" href="https://arxiv.org/abs/2603.01234v2">A dumped language model</a>'
        '<span class="byline">Ada Lovelace, Émilie du Châtelet, &lt;b&gt;Bold&lt;/b&gt;, '
        "Alan Turing — Mar 12, 2026 · cs.CL · cs.LG · 0 upvotes</span>",
    ]


def test_client_addresses_for_the_rate_limit() -> None:
    from starlette.requests import Request

    from digestd.web.security import SignUpRateLimit, client_address

    def request(peer: str, *forwarded: str) -> Request:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        return Request({"type": "http", "client": (peer, 1234), "headers": headers})

    assert client_address(request("192.0.2.1", "203.0.113.9"), proxy_headers=False) == "192.0.2.1"
    behind = request("127.0.0.1", "10.0.0.1, 203.0.113.9")
    assert client_address(behind, proxy_headers=True) == "203.0.113.9"
    assert client_address(request("127.0.0.1"), proxy_headers=True) == "127.0.0.1"
    # One IPv6 host has a whole /64 to itself: its addresses count together.
    first = client_address(request("2001:db8:1:2::1"), proxy_headers=False)
    second = client_address(request("2001:db8:1:2:ffff::9"), proxy_headers=False)
    assert first == second == "2001:db8:1:2::/64"
    assert client_address(request("2001:db8:1:3::1"), proxy_headers=False) != first

    clock = Clock()
    limiter = SignUpRateLimit(2, clock=clock)
    assert limiter.allow("a") is None and limiter.allow("a") is None
    wait = limiter.allow("a")
    assert wait is not None and timedelta(minutes=59) < wait <= timedelta(hours=1)
    assert limiter.allow("b") is None
    clock.advance(timedelta(minutes=30))
    assert limiter.allow("a") is not None  # refused attempts are not counted
    clock.advance(timedelta(minutes=31))
    assert limiter.allow("a") is None


def test_an_unreachable_database_is_a_503_page_not_a_traceback(web_site: WebSite) -> None:
    site = web_site
    database = Path(site.settings.database_url.removeprefix("sqlite:///"))
    site.engine.dispose()
    database.rename(database.with_suffix(".away"))
    database.mkdir()  # a folder where the file was: SQLite cannot open it
    try:
        for path in ("/", "/api/query-check?queries=oracle"):
            response = httpx.get(site.base_url + path)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "60"
            assert h1(response) == "Temporarily unavailable"
            assert "Traceback" not in response.text and "sqlite" not in response.text.lower()
            assert response.headers["content-security-policy"]
    finally:
        database.rmdir()
        database.with_suffix(".away").rename(database)
    assert httpx.get(site.base_url + "/").status_code == 200


def test_the_front_page_shows_papers_stored_after_an_earlier_visit(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    add_papers(site, date(2026, 3, 13), [("First language model", "x")])
    before = re.findall(
        r'class="more-link" href="[^"]*">([^<]*)</a>', httpx.get(site.base_url + "/").text
    )
    assert before == ["First language model"]
    add_papers(site, date(2026, 3, 14), [("Second language model", "x")])
    after = re.findall(
        r'class="more-link" href="[^"]*">([^<]*)</a>', httpx.get(site.base_url + "/").text
    )
    assert after == ["Second language model", "First language model"]
    check = httpx.get(site.base_url + "/api/query-check", params={"queries": "second"}).json()
    assert check["matches"] == 1
