"""The web application in a real browser: Debian's chromium driven by Playwright.

A subscriber signs up on ``/``, confirms from the mail a real SMTP server received, changes
their preferences from the link in a digest and unsubscribes from another; the pages also work
at 375 px wide and without JavaScript. Screenshots go to $DIGESTD_TEST_ARTIFACTS (default:
test-artifacts/ at the repository root). scripts/check installs chromium or leaves these out.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Subscriber
from digestd.store.people import find_subscriber
from digestd.tokens import link_url
from tests.conftest import free_port
from tests.support.smtp_faults import FaultServer, fault_server
from tests.support.web_server import running_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Read when the module is imported: the config_file fixture clears DIGESTD_* variables.
ARTIFACTS = Path(
    os.environ.get("DIGESTD_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "test-artifacts"
)
NARROW = 375  # px: a small phone


@dataclass
class Site:
    """The running web application and what it talks to."""

    settings: Settings
    engine: Engine
    smtp: FaultServer
    url: str  # == settings.feeds.base_url: the links in mails point here

    def subscriber(self, email: str) -> Subscriber | None:
        with session_scope(self.engine) as session:
            return find_subscriber(session, email)

    def queries_and_topics(self, email: str) -> tuple[list[str], list[str]]:
        with session_scope(self.engine) as session:
            found = find_subscriber(session, email)
            assert found is not None and found.id is not None
            queries = store.queries_by_subscriber(session).get(found.id, [])
            topics = [t.slug for t in store.topics_by_subscriber(session).get(found.id, [])]
        return sorted(queries), sorted(topics)

    def add_subscriber(self, email: str, *, queries: list[str]) -> Subscriber:
        with session_scope(self.engine) as session:
            return store.add_subscriber(session, email, queries=queries, now=jobs.utc_now())

    def link(self, purpose: str, subscriber: Subscriber) -> str:
        assert subscriber.id is not None
        secret = self.settings.link_secret()
        return link_url(self.url, secret, purpose, subscriber.id, subscriber.email)

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [
            message_from_bytes(m.data, policy=policy.default)  # type: ignore[misc]
            for m in self.smtp.messages
            if address in m.rcpt_tos
        ]

    def send(self) -> jobs.SendReport:
        """A send run, as ``digestd send --now`` does it."""
        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            run = jobs.run_send(self.settings, self.engine, ignore_schedule=True)
            return pool.submit(asyncio.run, run).result()

    def preview(self, email: str) -> list[jobs.PreparedDigest]:
        return jobs.prepare_digests(
            self.settings,
            self.engine,
            now=jobs.utc_now(),
            only_email=email,
            ignore_schedule=True,
            include_paused=True,
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"no chromium at {CHROMIUM} (scripts/install-chromium installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        # Debian's chromium, never a browser Playwright would download; root needs no sandbox.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def site(config_file: Path, sample_path: Path) -> Iterator[Site]:
    """The sample ingested into a SQLite file, two topics with their feeds, mail going to a
    real SMTP server, and the web application listening on the base URL of every link."""
    with fault_server() as smtp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        text = config_file.read_text(encoding="utf-8")
        text = text.replace("[smtp]\n", f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\n')
        text = text.replace('base_url = "https://digest.example.org"', f'base_url = "{url}"')
        text += f'\n[delivery]\nbackend = "smtp"\n\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
        config_file.write_text(text, encoding="utf-8")
        settings = load_settings(config_file, environ={})
        assert settings.feeds.base_url == url
        engine = make_engine(settings.database_url, create=True)
        migrate(engine)
        ingested = jobs.run_ingest(settings, engine, [sample_path])
        assert [f.status for f in ingested.files] == ["ingested"]
        with session_scope(engine) as session:
            now = jobs.utc_now()
            store.add_topic(
                session, "text-to-sql", query='"text-to-sql"', title="Text-to-SQL", now=now
            )
            store.add_topic(session, "oracle", query="title:oracle", title="Oracles", now=now)
        jobs.run_feeds(settings, engine)
        try:
            with running_app(settings, engine, port=port) as served:
                assert served == url
                yield Site(settings, engine, smtp, url)
        finally:
            engine.dispose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class _Links(HTMLParser):
    """Every link of an HTML document as (text, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((" ".join("".join(self._text).split()), self._href))
            self._href = None


def link_named(message: EmailMessage, text: str) -> str:
    """The href of the link whose text is ``text`` in the HTML part of ``message``."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "no HTML part"
    parser = _Links()
    parser.feed(str(part.get_content()))
    hrefs = [href for label, href in parser.links if label == text]
    assert len(hrefs) == 1, f"{text!r} links: {parser.links}"
    return hrefs[0]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text part"
    return str(part.get_content())


def mail_for(site: Site, address: str, count: int) -> EmailMessage:
    """The ``count``-th mail to ``address``, once it has arrived."""
    deadline = time.monotonic() + 10
    while len(mails := site.mails_to(address)) < count:
        assert time.monotonic() < deadline, f"{count} mails to {address} expected, got {mails}"
        time.sleep(0.02)
    return mails[count - 1]


def confirm_link(site: Site, address: str) -> str:
    """The link in the one confirmation mail sent to ``address``."""
    mail = mail_for(site, address, 1)
    assert mail["Subject"] == f"Confirm your subscription to {site.settings.digest.site_name}"
    text = text_of(mail)
    link = re.compile(rf"{re.escape(site.url)}/confirm/\S+")
    links = [line for line in text.splitlines() if link.fullmatch(line)]  # on a line of its own
    assert len(links) == 1, text
    return str(links[0])


def watch(page: Page) -> list[str]:
    """Collect what goes wrong in the page: Content-Security-Policy violations (reported in
    the console) and uncaught script errors."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    return problems


def submit(page: Page, form: str, button: str) -> int:
    """Press ``button`` of ``form`` and wait for the page it posts to; returns its status."""
    with page.expect_navigation() as navigation:
        page.locator(form).get_by_role("button", name=button, exact=True).click()
    response = navigation.value
    assert response is not None
    return response.status


def open_page(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, url


def subscribe(page: Page, site: Site, address: str, *, queries: str, topic: str) -> None:
    open_page(page, site.url + "/")
    form = page.locator("#subscribe")
    form.locator("input[name=email]").fill(address)
    form.locator("textarea[name=queries]").fill(queries)
    form.locator(f"input[name=topics][value={topic}]").check()
    assert submit(page, "#subscribe", "Subscribe") == 200
    expect(page.locator("h1")).to_have_text("Check your inbox")


def confirm(page: Page, site: Site, address: str) -> None:
    """Open the link of the confirmation mail; only pressing the button confirms."""
    open_page(page, confirm_link(site, address))
    subscriber = site.subscriber(address)
    assert subscriber is not None and subscriber.confirmed_at is None  # GET changes nothing
    assert submit(page, "form[method=post]", "Confirm my subscription") == 200
    expect(page.locator("h1")).to_have_text("You are subscribed")
    subscriber = site.subscriber(address)
    assert subscriber is not None and subscriber.confirmed_at is not None


@pytest.mark.slow
def test_subscribe_confirm_manage_unsubscribe(
    browser: Browser, site: Site, artifacts: Path
) -> None:
    address = "ada@example.org"
    context = browser.new_context(timezone_id="Europe/Paris")
    page = context.new_page()
    problems = watch(page)

    # The home page lists the topics with their feeds and newest papers, and the form.
    open_page(page, site.url + "/")
    expect(page.locator("a[href='/feeds/text-to-sql.atom']")).to_have_count(1)
    expect(page.locator("a[href='/feeds/oracle.atom']")).to_have_count(1)
    expect(page.get_by_text("TrustSQL: Benchmarking Text-to-SQL")).to_be_visible()
    page.screenshot(path=artifacts / "web-home.png", full_page=True)
    subscribe(page, site, address, queries="oracle", topic="text-to-sql")
    pending = site.subscriber(address)
    assert pending is not None and pending.confirmed_at is None
    assert pending.timezone == "Europe/Paris"  # preselected from the browser's zone
    assert site.queries_and_topics(address) == (["oracle"], ["text-to-sql"])
    assert site.send().count("sent") == 0  # nothing goes to a pending sign-up
    confirm(page, site, address)

    # The first digest carries the oracle papers and the links to manage and unsubscribe.
    assert site.send().count("sent") == 1
    digest = mail_for(site, address, 2)
    assert "your query “oracle”" in text_of(digest)
    manage = link_named(digest, "Manage your subscription")
    unsubscribe = link_named(digest, "Unsubscribe")
    assert manage.startswith(f"{site.url}/manage/")
    assert unsubscribe.startswith(f"{site.url}/unsubscribe/")
    assert site.preview(address) == []  # everything matched was sent

    # New keywords and no topic: saved, and the next digest follows them.
    open_page(page, manage)
    form = page.locator("#preferences")
    expect(form.locator("textarea[name=queries]")).to_have_value("oracle")
    expect(form.locator("input[name=topics][value=text-to-sql]")).to_be_checked()
    page.screenshot(path=artifacts / "web-manage.png", full_page=True)
    form.locator("textarea[name=queries]").fill("sql")
    form.locator("input[name=topics][value=text-to-sql]").uncheck()
    assert submit(page, "#preferences", "Save preferences") == 200
    expect(page.get_by_text("Preferences saved")).to_be_visible()
    expect(page.locator("#preferences textarea[name=queries]")).to_have_value("sql")
    assert site.queries_and_topics(address) == (["sql"], [])
    (preview,) = site.preview(address)
    assert preview.digest.entries
    assert {r for e in preview.digest.entries for r in e.reasons} == {"your query “sql”"}
    assert all("sql" in " ".join(e.matched_terms).lower() for e in preview.digest.entries), [
        e.matched_terms for e in preview.digest.entries
    ]

    # Unsubscribing from the digest's link: nothing more is sent, though papers are waiting.
    open_page(page, unsubscribe)
    still = site.subscriber(address)
    assert still is not None and still.suppressed_at is None  # GET changes nothing
    assert submit(page, "form[method=post]", "Unsubscribe") == 200
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    gone = site.subscriber(address)
    assert gone is not None and gone.suppressed_at is not None
    sent_before = site.smtp.count
    report = site.send()
    assert report.count("sent") == 0 and site.smtp.count == sent_before
    assert problems == []
    context.close()


@pytest.mark.slow
def test_pages_fit_a_narrow_screen(browser: Browser, site: Site, artifacts: Path) -> None:
    context = browser.new_context(
        viewport={"width": NARROW, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = watch(page)

    def fits(name: str, form: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW, f"{name} scrolls sideways: {width} px wide"
        controls = page.locator(form).locator("input, textarea, select, button")
        for index in range(controls.count()):
            box = controls.nth(index).bounding_box()
            if box is not None:  # hidden fields have none
                assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW + 0.5, (name, box)
        page.screenshot(path=artifacts / f"web-{name}-{NARROW}px.png", full_page=True)

    open_page(page, site.url + "/")
    fits("home", "#subscribe")
    subscribe(page, site, "narrow@example.org", queries="oracle", topic="oracle")
    confirm(page, site, "narrow@example.org")

    subscriber = site.subscriber("narrow@example.org")
    assert subscriber is not None
    open_page(page, site.link("manage", subscriber))
    fits("manage", "#preferences")
    page.locator("#preferences textarea[name=queries]").fill("oracle\nsql")
    assert submit(page, "#preferences", "Save preferences") == 200
    expect(page.get_by_text("Preferences saved")).to_be_visible()
    assert site.queries_and_topics("narrow@example.org") == (["oracle", "sql"], ["oracle"])
    assert problems == []
    context.close()


@pytest.mark.slow
def test_subscribe_and_confirm_without_javascript(browser: Browser, site: Site) -> None:
    address = "nojs@example.org"
    context = browser.new_context(java_script_enabled=False, timezone_id="Europe/Paris")
    page = context.new_page()

    # A bad query comes back next to its field, with what was typed kept.
    open_page(page, site.url + "/")
    form = page.locator("#subscribe")
    form.locator("input[name=email]").fill(address)
    form.locator("textarea[name=queries]").fill('"unclosed')
    assert submit(page, "#subscribe", "Subscribe") == 400
    expect(page.locator("#subscribe .error")).to_have_count(1)
    expect(page.locator("#subscribe input[name=email]")).to_have_value(address)
    expect(page.locator("#subscribe textarea[name=queries]")).to_have_value('"unclosed')
    assert site.subscriber(address) is None and site.mails_to(address) == []

    subscribe(page, site, address, queries="oracle", topic="oracle")
    pending = site.subscriber(address)
    assert pending is not None and pending.timezone == "UTC"  # no script, the default zone
    confirm(page, site, address)
    context.close()


@pytest.mark.slow
def test_javascript_preselects_the_timezone_and_checks_queries_live(
    browser: Browser, site: Site
) -> None:
    context = browser.new_context(timezone_id="Europe/Paris")
    page = context.new_page()
    problems = watch(page)
    open_page(page, site.url + "/")
    expect(page.locator("#subscribe select[name=timezone]")).to_have_value("Europe/Paris")

    with session_scope(site.engine) as session:
        papers = store.papers_of_last_days(session, 7)
    counts = jobs.match_queries({"sql": "sql", "oracle": "oracle"}, papers)
    expected = counts.count("sql")
    assert expected > 0 and expected != counts.count("oracle")
    subscriber = site.add_subscriber("live@example.org", queries=["oracle"])
    open_page(page, site.link("manage", subscriber))
    queries = page.locator("#preferences textarea[name=queries]")
    queries.fill("")
    queries.press_sequentially("sql", delay=20)  # typed key by key, as a person does
    check = page.locator("#query-check")
    expect(check).to_contain_text(re.compile(rf"\b{expected}\b"))
    counted = check.inner_text()
    queries.fill('"unclosed')
    expect(check).not_to_have_text(counted)  # the count gives way to the query's error
    assert site.queries_and_topics("live@example.org") == (["oracle"], [])  # only typed
    assert problems == []
    context.close()


def test_the_feeds_index_is_styled_and_leads_to_every_feed(
    browser: Browser, site: Site, artifacts: Path
) -> None:
    # The feeds job writes index.html to be read on its own (from disk, or any web server), so
    # it carries its own styles; the site's policy lets exactly those through, nothing else.
    page = browser.new_page()
    problems = watch(page)
    open_page(page, site.url + "/feeds/")
    assert problems == []
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(244, 244, 245)"  # the index's own style, applied
    page.screenshot(path=artifacts / "web-feeds-index.png", full_page=True)
    for slug in ("oracle", "text-to-sql"):
        with page.expect_navigation() as navigation:
            page.locator(f'a[href="{slug}.atom"]').click()
        response = navigation.value
        assert response is not None and response.status == 200
        assert response.url == f"{site.url}/feeds/{slug}.atom"
        page.go_back()
    page.close()
