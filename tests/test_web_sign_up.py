"""Signing up over HTTP: the confirmation mail, confirming, form errors and the rate limit,
against the app under uvicorn, a real SQLite file and a real SMTP server."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from digestd import store
from digestd.config import load_settings
from digestd.db import session_scope
from tests.support.web_pages import (
    add_subscriber,
    add_topic,
    client,
    csrf_of,
    h1,
    link_in,
    local_app,
    parse,
    path_of,
    plain_text,
    sign_up_form,
    subscribe,
    subscriber,
    subscriber_rows,
)
from tests.support.web_server import (
    Clock,
    WebSite,
    web_site_fixture,  # noqa: F401  (the web_site fixture)
)

# Sign-up, confirmation mail, confirming


def test_sign_up_mails_one_confirmation_and_only_post_confirms(web_site: WebSite) -> None:
    site = web_site
    with client(site) as http:
        answer = subscribe(http, "ada@example.org", queries="language model\ndiffusion")
        assert answer.status_code == 200
        assert h1(answer) == "Check your inbox"
        assert site.smtp.wait_for(1)
        time.sleep(0.2)
        assert site.smtp.count == 1
        received = site.smtp.messages[0]
        assert received.rcpt_tos == ("ada@example.org",)
        mail = parse(received.data)
        assert mail["Subject"] == "Confirm your subscription to digestd"
        assert mail.get_body(preferencelist=("html",)) is not None
        confirm_url = link_in(plain_text(mail), "confirm")
        assert confirm_url.startswith(f"{site.base_url}/confirm/")
        pending = subscriber(site, "ada@example.org")
        assert pending is not None and pending.confirmed_at is None
        with session_scope(site.engine) as session:
            assert store.queries_by_subscriber(session)[pending.id or 0] == [
                "language model",
                "diffusion",
            ]

        page = http.get(path_of(confirm_url))
        assert page.status_code == 200
        assert '<form class="form" method="post">' in page.text
        assert "Confirm my subscription</button>" in page.text
        still = subscriber(site, "ada@example.org")
        assert still is not None and still.confirmed_at is None

        done = http.post(path_of(confirm_url), data={"csrf": csrf_of(http, path_of(confirm_url))})
        assert done.status_code == 200
        assert h1(done) == "You are subscribed"
        confirmed = subscriber(site, "ada@example.org")
        assert confirmed is not None and confirmed.confirmed_at is not None


def test_signing_up_again_mails_once_per_window(web_site: WebSite) -> None:
    site = web_site
    with client(site) as http:
        assert subscribe(http, "ada@example.org").status_code == 200
        assert site.smtp.wait_for(1)
        again = subscribe(http, "ada@example.org", queries="diffusion")
        assert again.status_code == 200 and h1(again) == "Check your inbox"
        time.sleep(0.5)  # the mail would go out right after the answer
        assert site.smtp.count == 1

        window = site.settings.web.confirm_resend_minutes
        site.clock.advance(timedelta(minutes=window + 1))
        assert subscribe(http, "ada@example.org").status_code == 200
        assert site.smtp.wait_for(2)
        time.sleep(0.2)
        assert site.smtp.count == 2
        assert parse(site.smtp.messages[1].data)["Subject"].startswith("Confirm")


def test_a_subscribed_address_gets_the_same_page_and_its_manage_link(web_site: WebSite) -> None:
    site = web_site
    subscriber_id = add_subscriber(site, "bob@example.org")
    with client(site) as http:
        known = subscribe(http, "bob@example.org")
        new = subscribe(http, "new@example.org")
        assert known.status_code == new.status_code == 200
        assert known.content == new.content
        assert site.smtp.wait_for(2)
        by_recipient = {m.rcpt_tos[0]: parse(m.data) for m in site.smtp.messages}
        already = by_recipient["bob@example.org"]
        assert already["Subject"] == "You are already subscribed to digestd"
        manage_url = link_in(plain_text(already), "manage")
        assert "/confirm/" not in plain_text(already)
        page = http.get(path_of(manage_url))
        assert h1(page) == "Your preferences"
        assert "bob@example.org" in page.text
    bob = subscriber(site, "bob@example.org")
    assert bob is not None and bob.id == subscriber_id and bob.confirmed_at is not None


def test_a_failed_mail_keeps_the_sign_up_and_the_page(web_site: WebSite) -> None:
    site = web_site
    site.smtp.hang_up = True
    with client(site) as http:
        answer = subscribe(http, "ada@example.org")
    assert answer.status_code == 200 and h1(answer) == "Check your inbox"
    time.sleep(0.5)
    assert site.smtp.count == 0
    pending = subscriber(site, "ada@example.org")
    assert pending is not None and pending.confirmed_at is None


def test_the_file_backend_writes_the_confirmation(config_file: Path) -> None:
    outbox = load_settings(config_file).folder("outbox")  # [delivery] backend = "file"
    with local_app(config_file) as (base_url, _), httpx.Client(base_url=base_url) as http:
        data = {**sign_up_form("ada@example.org"), "csrf": csrf_of(http)}
        assert http.post("/subscribe", data=data).status_code == 200
        deadline = time.monotonic() + 5
        while not list(outbox.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.02)
    [written] = list(outbox.glob("*.eml"))
    text = plain_text(parse(written.read_bytes()))
    assert link_in(text, "confirm").startswith(f"{base_url}/confirm/")


# Form errors


def test_a_query_error_is_shown_next_to_the_field_with_the_typed_values(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    add_topic(site, "vision", "image", "Vision")
    with client(site) as http:
        answer = subscribe(
            http,
            "ada@example.org",
            queries="diffusion\nreasoning AND",
            topics=["vision"],
            frequency="weekly",
            send_hour="18",
            timezone="Europe/Paris",
            weekday="fri",
        )
    assert answer.status_code == 400
    page = answer.text
    error = re.search(r'</textarea>\s*<p class="error" id="queries-error">([^<]*)</p>', page, re.S)
    assert error is not None and "Line 2" in error.group(1) and "AND" in error.group(1)
    assert 'value="ada@example.org"' in page
    assert ">diffusion\nreasoning AND</textarea>" in page
    assert '<input type="checkbox" name="topics" value="vision" checked>' in page
    assert '<input type="checkbox" name="topics" value="llm">' in page
    assert '<option value="weekly" selected>' in page
    assert '<option value="18" selected>' in page
    assert "<option selected>Europe/Paris</option>" in page
    assert '<option value="fri" selected>' in page
    assert subscriber(site, "ada@example.org") is None
    time.sleep(0.2)
    assert site.smtp.count == 0


@pytest.mark.parametrize("address", ["not-an-address", "ada@", "a b@example.org", "x" * 400])
def test_a_bad_address_is_a_400_next_to_the_email_field(web_site: WebSite, address: str) -> None:
    with client(web_site) as http:
        answer = subscribe(http, address)
    assert answer.status_code == 400
    assert re.search(r'name="email"[^>]*aria-invalid="true">\s*<p class="error"', answer.text)
    assert subscriber_rows(web_site) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"queries": "", "topics": []}, "queries"),
        ({"topics": ["no-such-topic"]}, "topics"),
        ({"frequency": "hourly"}, "frequency"),
        ({"send_hour": "24"}, "send_hour"),
        ({"send_hour": "٣"}, "send_hour"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "America"}, "timezone"),
        ({"weekday": "someday"}, "weekday"),
    ],
)
def test_each_bad_field_is_named(web_site: WebSite, fields: dict[str, object], field: str) -> None:
    with client(web_site) as http:
        answer = subscribe(http, "ada@example.org", **fields)
    assert answer.status_code == 400
    assert f'id="{field}-error"' in answer.text
    assert answer.text.count('class="error"') == 1
    assert subscriber_rows(web_site) == []


# Rate limit


def test_the_sign_up_rate_limit_counts_per_client(config_file: Path) -> None:
    clock = Clock()
    with (
        local_app(config_file, clock, subscribe_per_hour=3) as (base_url, engine),
        httpx.Client(base_url=base_url) as http,
    ):
        csrf = csrf_of(http)
        spoofed = {"X-Forwarded-For": "203.0.113.9"}
        for number in range(3):
            form = {**sign_up_form(f"user{number}@example.org"), "csrf": csrf}
            assert http.post("/subscribe", data=form, headers=spoofed).status_code == 200
        form = {**sign_up_form("late@example.org"), "csrf": csrf}
        refused = http.post("/subscribe", data=form)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        # Without [web] proxy_headers, X-Forwarded-For is the client's word: ignored.
        other = {"X-Forwarded-For": "198.51.100.7"}
        assert http.post("/subscribe", data=form, headers=other).status_code == 429
        clock.advance(timedelta(minutes=61))
        assert http.post("/subscribe", data=form).status_code == 200
    with session_scope(engine) as session:
        assert store.subscriber_by_email(session, "late@example.org").confirmed_at is None


def test_behind_a_proxy_the_limit_follows_x_forwarded_for(config_file: Path) -> None:
    with (
        local_app(config_file, subscribe_per_hour=1, proxy_headers=True) as (base_url, _),
        httpx.Client(base_url=base_url) as http,
    ):
        csrf = csrf_of(http)
        form = {**sign_up_form("ada@example.org"), "csrf": csrf}

        def post(forwarded: str) -> int:
            headers = {"X-Forwarded-For": forwarded}
            return http.post("/subscribe", data=form, headers=headers).status_code

        assert post("203.0.113.9") == 200
        assert post("203.0.113.9") == 429
        assert post("198.51.100.7") == 200
        # The proxy appends the address it saw: what the client wrote before it is not trusted.
        assert post("192.0.2.1, 203.0.113.9") == 429
