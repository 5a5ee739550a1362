"""An unsubscribe stands, and each confirmation link applies the preferences of the sign-up that
mailed it: over HTTP against the running site (tests/support/web_server.py), with the links taken
from the mails a real SMTP server received and digests sent by real send runs."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from digestd import jobs, store
from digestd.db import session_scope
from digestd.jobs.bounce_job import run_bounces
from digestd.models import SignUpRequest
from digestd.store import signup
from digestd.tokens import unsubscribe_mailto
from digestd.web.security import CSRF_COOKIE
from tests.conftest import SAMPLE
from tests.support.web_pages import (
    add_topic,
    client,
    csrf_of,
    h1,
    link_in,
    parse,
    path_of,
    plain_text,
    subscribe,
    subscriber,
    subscriber_rows,
)
from tests.support.web_server import WebSite, web_site_fixture  # noqa: F401  (the web_site fixture)

ADA = "ada@example.org"


def mails_to(site: WebSite, address: str, count: int) -> list[EmailMessage]:
    """The mails ``address`` received, once there are ``count`` of them (and no more)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mails = [parse(m.data) for m in site.smtp.messages if address in m.rcpt_tos]
        if len(mails) >= count:
            time.sleep(0.5)  # a mail too many would be on its way right after the answer
            mails = [parse(m.data) for m in site.smtp.messages if address in m.rcpt_tos]
            assert len(mails) == count, [m["Subject"] for m in mails]
            return mails
        time.sleep(0.02)
    raise AssertionError(f"{address} did not get {count} mails")


def list_unsubscribe(mail: EmailMessage) -> str:
    """The http link of a mail's List-Unsubscribe header."""
    found = re.search(r"<(http[^>]+)>", str(mail["List-Unsubscribe"]))
    assert found, mail["List-Unsubscribe"]
    return path_of(found.group(1))


def one_click(site: WebSite, path: str) -> None:
    """What a mail client does with RFC 8058 one-click: a POST without any cookie."""
    answer = httpx.post(site.base_url + path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and h1(answer) == "You are unsubscribed"


def press(http: httpx.Client, path: str) -> httpx.Response:
    """Open a link's page and press its button."""
    return http.post(path, data={"csrf": csrf_of(http, path)})


def digests_sent_to(site: WebSite, address: str) -> int:
    """Run a send run as ``digestd send --now`` does; how many digests went to ``address``."""
    report = asyncio.run(jobs.run_send(site.settings, site.engine, ignore_schedule=True))
    return sum(o.status == "sent" and o.email == address for o in report.outcomes)


def open_requests(site: WebSite) -> int:
    with session_scope(site.engine) as session:
        return len(session.exec(select(SignUpRequest)).all())


def past_resend_window(site: WebSite) -> None:
    site.clock.advance(timedelta(minutes=site.settings.web.confirm_resend_minutes + 1))


def with_papers(site: WebSite) -> WebSite:
    """The sample dump stored: a digest asking for "oracle" has papers to carry."""
    jobs.run_ingest(site.settings, site.engine, [Path(SAMPLE)])
    return site


# Point 1: an unsubscribe stands


def test_a_confirm_link_mailed_before_a_one_click_unsubscribe_is_dead(web_site: WebSite) -> None:
    site = with_papers(web_site)
    with client(site) as http:
        assert subscribe(http, ADA, queries="oracle").status_code == 200
        [mail] = mails_to(site, ADA, 1)
        confirm = path_of(link_in(plain_text(mail), "confirm"))
        one_click(site, list_unsubscribe(mail))
        assert open_requests(site) == 0
        answer = press(http, confirm)
    ada = subscriber(site, ADA)
    assert ada is not None and ada.suppressed_at is not None and ada.confirmed_at is None
    assert digests_sent_to(site, ADA) == 0
    assert h1(answer) == "This link is no longer valid"


def test_a_fresh_unused_confirm_link_is_dead_after_an_unsubscribe(web_site: WebSite) -> None:
    site = with_papers(web_site)
    with client(site) as http:
        subscribe(http, ADA, queries="oracle")
        past_resend_window(site)
        subscribe(http, ADA, queries="oracle\nsql")
        first, second = mails_to(site, ADA, 2)
        assert h1(press(http, path_of(link_in(plain_text(first), "confirm")))) == (
            "You are subscribed"
        )
        assert digests_sent_to(site, ADA) == 1
        # Unsubscribed from the link of the second mail: its confirm link, never used and
        # well within its hours, no longer subscribes anyone.
        one_click(site, list_unsubscribe(second))
        answer = press(http, path_of(link_in(plain_text(second), "confirm")))
        ada = subscriber(site, ADA)
        assert ada is not None and ada.suppressed_reason == "unsubscribed (one-click)"
        assert digests_sent_to(site, ADA) == 0
        assert h1(answer) == "This link is no longer valid"

        # Only a new sign-up, confirmed from its own mail, subscribes them again.
        past_resend_window(site)
        assert subscribe(http, ADA, queries="reasoning").status_code == 200
        *_, third = mails_to(site, ADA, 4)  # two mails, one digest, the new confirmation
        assert third["Subject"].startswith("Confirm")
        still = subscriber(site, ADA)
        assert still is not None and still.suppressed_at is not None  # not before the click
        again = press(http, path_of(link_in(plain_text(third), "confirm")))
        assert h1(again) == "You are subscribed"
        assert '<code class="query">reasoning</code>' in again.text
    back = subscriber(site, ADA)
    assert back is not None and back.suppressed_at is None and back.confirmed_at is not None
    with session_scope(site.engine) as session:
        assert store.queries_of(session, back.id or 0) == ["reasoning"]


def test_a_manage_link_never_subscribes_again(web_site: WebSite) -> None:
    site = with_papers(web_site)
    add_topic(site, "llm", "language model", "Language models")
    with client(site) as http:
        subscribe(http, ADA, queries="oracle")
        [confirmation] = mails_to(site, ADA, 1)
        press(http, path_of(link_in(plain_text(confirmation), "confirm")))
        past_resend_window(site)
        subscribe(http, ADA, queries="anything")  # brings the "already subscribed" mail
        _, already = mails_to(site, ADA, 2)
        manage = path_of(link_in(plain_text(already), "manage"))
        one_click(site, list_unsubscribe(already))
        before = subscriber_rows(site)

        page = http.get(manage)
        assert page.status_code == 200 and h1(page) == "You are unsubscribed"
        assert 'id="preferences"' not in page.text and 'name="paused"' not in page.text
        assert 'href="/#signup"' in page.text  # how to subscribe again
        assert "/feeds/me/" in page.text  # the private feed stays theirs
        csrf = csrf_of(http)
        form = {"queries": "oracle", "frequency": "daily", "send_hour": "7"}
        form |= {"timezone": "UTC", "weekday": "mon", "topics": ["llm"], "csrf": csrf}
        for fields in (form, {**form, "paused": "yes"}, {**form, "paused": ""}):
            saved = http.post(manage, data=fields)
            assert saved.status_code == 409 and h1(saved) == "You are unsubscribed"
            assert "Preferences saved" not in saved.text
    assert subscriber_rows(site) == before
    assert digests_sent_to(site, ADA) == 0


def test_an_unsubscribe_by_mail_withdraws_the_confirm_link(
    web_site: WebSite, tmp_path: Path
) -> None:
    site = with_papers(web_site)
    with client(site) as http:
        subscribe(http, ADA, queries="oracle")
        [mail] = mails_to(site, ADA, 1)
        ada = subscriber(site, ADA)
        assert ada is not None and ada.id is not None
        # What a mail client sends for the mailto: of a digest's List-Unsubscribe.
        mailto = unsubscribe_mailto(
            "unsubscribe@digest.example.org", site.settings.link_secret(), ada.id, ADA
        )
        subject = mailto.split("?subject=", 1)[1].replace("%20", " ")
        request = tmp_path / "unsubscribe.eml"
        request.write_text(
            f"From: {ADA}\nTo: unsubscribe@digest.example.org\nSubject: {subject}\n\n"
        )
        report = run_bounces(site.settings, site.engine, request)
        assert report.count("unsubscribe") == 1
        answer = press(http, path_of(link_in(plain_text(mail), "confirm")))
    ada = subscriber(site, ADA)
    assert ada is not None and ada.suppressed_reason == "unsubscribed (mail)"
    assert digests_sent_to(site, ADA) == 0
    assert h1(answer) == "This link is no longer valid"


# Point 2: preferences travel with their own confirmation


def summary(page: httpx.Response) -> dict[str, str]:
    """The confirmed page's list of what was applied: term -> text (tags dropped)."""
    pairs = re.findall(
        r'<dt class="summary-term">([^<]*)</dt>\s*<dd class="summary-value">(.*?)</dd>',
        page.text,
        re.S,
    )
    return {
        term: re.sub(r"<br>", " | ", re.sub(r"<(?!br>)[^>]*>", "", text)) for term, text in pairs
    }


def stored(site: WebSite, email: str) -> tuple[object, ...]:
    with session_scope(site.engine) as session:
        found = store.subscriber_by_email(session, email)
        topics = [t.slug for t in store.topics_of(session, found.id or 0)]
        queries = store.queries_of(session, found.id or 0)
        return (queries, topics, found.frequency, found.send_hour, found.timezone, found.weekday)


def wants_revised(site: WebSite, email: str) -> bool:
    with session_scope(site.engine) as session:
        return store.subscriber_by_email(session, email).revised_papers


def test_each_link_applies_the_preferences_of_its_own_sign_up(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language <models>")
    add_topic(site, "vision", "image", "Vision")
    first = {"queries": "oracle", "frequency": "daily", "send_hour": "7", "timezone": "UTC"}
    inside = {"queries": "diffusion", "topics": ["vision"], "send_hour": "3"}
    second = {
        "queries": "sql\nagents",
        "topics": ["llm"],
        "frequency": "weekly",
        "send_hour": "18",
        "timezone": "Europe/Paris",
        "weekday": "fri",
        "revised_papers": "yes",
    }
    with client(site) as http:
        subscribe(http, ADA, **first)
        # Anyone can type Ada's address: inside the window this mails and records nothing.
        assert subscribe(http, ADA, **inside).status_code == 200
        [mail_one] = mails_to(site, ADA, 1)
        assert stored(site, ADA) == (["oracle"], [], "daily", 7, "UTC", "mon")
        assert open_requests(site) == 1
        past_resend_window(site)
        subscribe(http, ADA, **second)
        _, mail_two = mails_to(site, ADA, 2)
        link_one = path_of(link_in(plain_text(mail_one), "confirm"))
        link_two = path_of(link_in(plain_text(mail_two), "confirm"))
        # Still pending: what is stored is what the first sign-up asked for.
        assert stored(site, ADA) == (["oracle"], [], "daily", 7, "UTC", "mon")

        done = press(http, link_one)
        assert h1(done) == "You are subscribed"
        assert summary(done) == {
            "Keywords": "oracle",
            "Topics": "none",
            "Frequency": "Daily",
            "Send at": "07:00, UTC time",
            "Order": "Most relevant first",
            "New versions": "Only new papers",
        }
        assert not wants_revised(site, ADA)
        assert ADA in done.text and "/manage/" not in done.text
        assert stored(site, ADA) == (["oracle"], [], "daily", 7, "UTC", "mon")

        done = press(http, link_two)
        assert h1(done) == "You are subscribed"
        assert summary(done) == {
            "Keywords": "sql | agents",
            "Topics": "Language &lt;models&gt;",
            "Frequency": "Weekly, on Friday",
            "Send at": "18:00, Europe/Paris time",
            "Order": "Most relevant first",
            "New versions": "A paper comes again when a new version of it appears",
        }
        assert wants_revised(site, ADA)
        assert stored(site, ADA) == (
            ["sql", "agents"],
            ["llm"],
            "weekly",
            18,
            "Europe/Paris",
            "fri",
        )

        # Each link works once.
        assert h1(press(http, link_one)) == "This link is no longer valid"
    assert stored(site, ADA) == (["sql", "agents"], ["llm"], "weekly", 18, "Europe/Paris", "fri")
    assert open_requests(site) == 0


def test_a_confirm_link_expires_with_its_request(web_site: WebSite) -> None:
    site = web_site
    with client(site) as http:
        subscribe(http, ADA)
        [mail] = mails_to(site, ADA, 1)
        site.clock.advance(timedelta(hours=site.settings.web.confirm_hours, minutes=1))
        answer = press(http, path_of(link_in(plain_text(mail), "confirm")))
    ada = subscriber(site, ADA)
    assert ada is not None and ada.confirmed_at is None
    assert h1(answer) == "This link is no longer valid"
    assert 'href="/"' in answer.text  # the way back to the sign-up form


def test_two_clicks_at_once_confirm_once(
    web_site: WebSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = web_site
    read_request = signup.request_preferences

    def slowly(request: SignUpRequest) -> signup.Preferences:
        time.sleep(0.3)  # the clicks overlap: each holds its transaction a while
        return read_request(request)

    monkeypatch.setattr(signup, "request_preferences", slowly)
    with client(site) as http:
        subscribe(http, ADA, queries="oracle")
        [mail] = mails_to(site, ADA, 1)
        link = path_of(link_in(plain_text(mail), "confirm"))
        csrf = csrf_of(http, link)
    barrier = threading.Barrier(4)

    def click(_: int) -> httpx.Response:
        with httpx.Client(base_url=site.base_url, cookies={CSRF_COOKIE: csrf}) as own:
            barrier.wait()
            return own.post(link, data={"csrf": csrf})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(click, range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(h1(a) for a in answers) == ["This link is no longer valid"] * 3 + [
        "You are subscribed"
    ]
    assert open_requests(site) == 0
