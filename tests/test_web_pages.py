"""The web pages over HTTP: httpx against the app running under uvicorn, a real SQLite file and
a real SMTP server for the mails (tests/support/web_server.py)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Dump, Paper, Subscriber
from digestd.store import signup
from digestd.tokens import make_token, read_token
from digestd.web.security import CONTENT_SECURITY_POLICY, CSRF_COOKIE
from tests.conftest import free_port
from tests.support.web_server import (
    Clock,
    WebSite,
    running_app,
    site_settings,
    web_site_fixture,  # noqa: F401  (the web_site fixture)
)

H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')


# Helpers


def h1(response: httpx.Response) -> str:
    found = H1.search(response.text)
    assert found, response.text[:500]
    return found.group(1).strip()


def client(site: WebSite) -> httpx.Client:
    return httpx.Client(base_url=site.base_url, timeout=10)


def csrf_of(http: httpx.Client, path: str = "/") -> str:
    """GET a page with a form; its csrf field, which must equal the cookie."""
    page = http.get(path)
    assert page.status_code == 200
    field = CSRF_FIELD.search(page.text)
    assert field is not None
    assert http.cookies.get(CSRF_COOKIE) == field.group(1)
    return field.group(1)


def sign_up_form(email: str, **fields: object) -> dict[str, object]:
    form: dict[str, object] = {
        "email": email,
        "queries": "language model",
        "frequency": "daily",
        "send_hour": "7",
        "timezone": "UTC",
        "weekday": "mon",
    }
    form.update(fields)
    return form


def subscribe(http: httpx.Client, email: str, **fields: object) -> httpx.Response:
    return http.post("/subscribe", data={**sign_up_form(email, **fields), "csrf": csrf_of(http)})


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(text: str, purpose: str) -> str:
    lines = [line for line in text.splitlines() if re.fullmatch(rf"http://\S+/{purpose}/\S+", line)]
    assert len(lines) == 1, text
    return lines[0]


def subscriber(site: WebSite, email: str) -> Subscriber | None:
    with session_scope(site.engine) as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def subscriber_rows(site: WebSite) -> list[tuple[object, ...]]:
    """Every subscriber with their queries and topics: what no GET may change."""
    with session_scope(site.engine) as session:
        queries = store.queries_by_subscriber(session)
        topics = store.topics_by_subscriber(session)
        return [
            (
                *s.model_dump().items(),
                tuple(queries.get(s.id or 0, [])),
                tuple(t.slug for t in topics.get(s.id or 0, [])),
            )
            for s in session.exec(select(Subscriber).order_by(Subscriber.id)).all()
        ]


def add_subscriber(site: WebSite, email: str, *, confirmed: bool = True, **kwargs: object) -> int:
    with session_scope(site.engine) as session:
        added = store.add_subscriber(
            session,
            email,
            queries=kwargs.pop("queries", ["language model"]),  # type: ignore[arg-type]
            now=site.clock(),
            confirmed=confirmed,
            **kwargs,  # type: ignore[arg-type]
        )
        session.flush()
        assert added.id is not None
        return added.id


def add_topic(site: WebSite, slug: str, query: str, title: str = "", description: str = "") -> None:
    with session_scope(site.engine) as session:
        store.add_topic(
            session, slug, query=query, title=title, description=description, now=site.clock()
        )


def add_papers(site: WebSite, day: date, papers: list[tuple[str, str]]) -> None:
    with session_scope(site.engine) as session:
        dump = Dump(
            sha256=f"{day.isoformat()}-{len(papers)}".ljust(64, "0"),
            file_name=f"{day}.txt",
            dump_date=day,
            ingested_at=site.clock(),
            paper_count=len(papers),
            new_count=len(papers),
        )
        session.add(dump)
        session.flush()
        assert dump.id is not None
        for number, (title, abstract) in enumerate(papers):
            uid = f"{day.isoformat()}-{number}"
            session.add(
                Paper(
                    uid=uid,
                    title_key=uid,
                    title=title,
                    abstract=abstract,
                    dump_id=dump.id,
                    dump_date=day,
                    first_seen=site.clock(),
                    # an instant of its own, as store_dump gives each paper
                    updated_at=site.clock() + timedelta(microseconds=1000 * dump.id + number),
                )
            )


@contextmanager
def local_app(
    config_file: Path, clock: Clock | None = None, **web: object
) -> Iterator[tuple[str, Engine]]:
    """The app on the test config with links on its own http URL and ``web`` changes; the
    file mail backend."""
    port = free_port()
    settings = site_settings(load_settings(config_file), port=port)
    settings = dataclasses.replace(settings, web=dataclasses.replace(settings.web, **web))
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with running_app(settings, engine, clock=clock, port=port) as base_url:
        yield base_url, engine


def token(site: WebSite, purpose: str, subscriber_id: int, email: str) -> str:
    return make_token(site.settings.link_secret(), purpose, subscriber_id, email)


def path_of(url: str) -> str:
    return httpx.URL(url).raw_path.decode()


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


# CSRF


def test_posts_without_the_csrf_field_or_cookie_are_refused(web_site: WebSite) -> None:
    site = web_site
    subscriber_id = add_subscriber(site, "bob@example.org")
    manage = f"/manage/{token(site, 'manage', subscriber_id, 'bob@example.org')}"
    unsubscribe = f"/unsubscribe/{token(site, 'unsubscribe', subscriber_id, 'bob@example.org')}"
    before = subscriber_rows(site)
    with client(site) as http:
        good = csrf_of(http)
        data = sign_up_form("ada@example.org")
        assert http.post("/subscribe", data=data).status_code == 403
        forged = ("y" if good[0] == "x" else "x") + good[1:]  # one character off
        assert http.post("/subscribe", data={**data, "csrf": forged}).status_code == 403
        assert http.post("/subscribe", data={**data, "csrf": ""}).status_code == 403
        prefs = {"queries": "diffusion", "frequency": "weekly", "send_hour": "3"}
        prefs |= {"timezone": "UTC", "weekday": "mon"}
        assert http.post(manage, data=prefs).status_code == 403
        assert http.post(unsubscribe, data={"csrf": good[::-1]}).status_code == 403
    with httpx.Client(base_url=site.base_url) as stranger:  # the right field, no cookie
        refused = stranger.post("/subscribe", data={**data, "csrf": good})
        assert refused.status_code == 403
        assert h1(refused) == "This form has expired"
        assert stranger.post(unsubscribe, data={"csrf": good}).status_code == 403
    assert subscriber_rows(site) == before
    time.sleep(0.2)
    assert site.smtp.count == 0


def test_the_csrf_cookie_is_strict_httponly_and_secure_on_https(config_file: Path) -> None:
    settings = load_settings(config_file)  # base_url https://digest.example.org
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with running_app(settings, engine) as base_url:
        cookie = httpx.get(f"{base_url}/").headers["set-cookie"].lower()
    for part in ("digestd_csrf=", "httponly", "samesite=strict", "path=/", "secure"):
        assert part in cookie


# Unsubscribing


def test_one_click_unsubscribe_needs_no_cookie(web_site: WebSite) -> None:
    site = web_site
    subscriber_id = add_subscriber(site, "bob@example.org")
    url = f"/unsubscribe/{token(site, 'unsubscribe', subscriber_id, 'bob@example.org')}"
    answer = httpx.post(
        site.base_url + url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert h1(answer) == "You are unsubscribed"
    bob = subscriber(site, "bob@example.org")
    assert bob is not None and bob.suppressed_at is not None
    assert bob.suppressed_reason == "unsubscribed (one-click)"


def test_the_unsubscribe_button_needs_the_csrf_field(web_site: WebSite) -> None:
    site = web_site
    subscriber_id = add_subscriber(site, "bob@example.org")
    url = f"/unsubscribe/{token(site, 'unsubscribe', subscriber_id, 'bob@example.org')}"
    with client(site) as http:
        page = http.get(url)
        assert "Unsubscribe</button>" in page.text
        untouched = subscriber(site, "bob@example.org")
        assert untouched is not None and untouched.suppressed_at is None
        answer = http.post(url, data={"csrf": csrf_of(http, url)})
    assert h1(answer) == "You are unsubscribed"
    bob = subscriber(site, "bob@example.org")
    assert bob is not None and bob.suppressed_reason == "unsubscribed (web)"


# Tokens: scope, expiry, forgery, and the neutral pages


def test_a_token_works_only_for_its_purpose(web_site: WebSite) -> None:
    site = web_site
    email = "bob@example.org"
    bob_id = add_subscriber(site, email)
    ada_id = add_subscriber(site, "ada@example.org", confirmed=False)
    before = subscriber_rows(site)
    with client(site) as http:
        csrf = csrf_of(http)
        unsub_token = token(site, "unsubscribe", bob_id, email)
        manage_token = token(site, "manage", bob_id, email)
        assert h1(http.get(f"/manage/{unsub_token}")) == "This link is no longer valid"
        prefs = {"queries": "diffusion", "frequency": "weekly", "send_hour": "3", "csrf": csrf}
        prefs |= {"timezone": "UTC", "weekday": "mon"}
        assert h1(http.post(f"/manage/{unsub_token}", data=prefs)) == (
            "This link is no longer valid"
        )
        ada_unsub = token(site, "unsubscribe", ada_id, "ada@example.org")
        assert h1(http.post(f"/confirm/{ada_unsub}", data={"csrf": csrf})) == (
            "This link is no longer valid"
        )
        one_click = {"List-Unsubscribe": "One-Click"}
        assert http.post(f"/unsubscribe/{manage_token}", data=one_click).status_code == 200
        assert http.post(f"/unsubscribe/{manage_token}", data={"csrf": csrf}).status_code == 200
        ada_confirm = token(site, "confirm", ada_id, "ada@example.org")
        assert http.post(f"/unsubscribe/{ada_confirm}", data=one_click).status_code == 200
    assert subscriber_rows(site) == before


def test_a_confirm_token_expires_and_must_name_its_sign_up(
    web_site: WebSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = web_site
    with session_scope(site.engine) as session:
        done = signup.sign_up(
            session,
            "ada@example.org",
            signup.Preferences(queries=["language model"], topic_slugs=[]),
            now=site.clock(),
            resend_after=timedelta(hours=1),
        )
        assert done.subscriber is not None and done.nonce is not None
        ada_id, nonce = done.subscriber.id, done.nonce
    assert ada_id is not None
    hours = site.settings.web.confirm_hours

    def made_ago(age: timedelta, reference: str | None = nonce) -> str:
        stamp = int(time.time() - age.total_seconds())
        with monkeypatch.context() as patch:
            patch.setattr("itsdangerous.timed.TimestampSigner.get_timestamp", lambda _: stamp)
            return make_token(
                site.settings.link_secret(),
                "confirm",
                ada_id,
                "ada@example.org",
                reference=reference,
            )

    with client(site) as http:
        csrf = csrf_of(http)
        # Too old, or naming no sign-up (as links did before sign-ups were requests): nothing.
        for stale in (
            made_ago(timedelta(hours=hours, minutes=5)),
            made_ago(timedelta(minutes=5), reference=None),
        ):
            answer = http.post(f"/confirm/{stale}", data={"csrf": csrf})
            assert h1(answer) == "This link is no longer valid"
            ada = subscriber(site, "ada@example.org")
            assert ada is not None and ada.confirmed_at is None
        fresh = http.post(f"/confirm/{made_ago(timedelta(hours=hours - 1))}", data={"csrf": csrf})
        assert h1(fresh) == "You are subscribed"
        assert '<code class="query">language model</code>' in fresh.text
    ada = subscriber(site, "ada@example.org")
    assert ada is not None and ada.confirmed_at is not None


def test_forged_and_orphaned_tokens_change_nothing(web_site: WebSite) -> None:
    site = web_site
    gone_id = add_subscriber(site, "gone@example.org", confirmed=False)
    orphaned = {p: token(site, p, gone_id, "gone@example.org") for p in ("confirm", "manage")}
    orphaned["unsubscribe"] = token(site, "unsubscribe", gone_id, "gone@example.org")
    with session_scope(site.engine) as session:
        store.remove_subscriber(session, "gone@example.org")
    # SQLite gives the next subscriber the freed id: the old links must not reach them.
    heir_id = add_subscriber(site, "heir@example.org", confirmed=False)
    assert heir_id == gone_id
    other_secret = make_token("another secret", "confirm", heir_id, "heir@example.org")
    before = subscriber_rows(site)
    with client(site) as http:
        csrf = csrf_of(http)
        for bad in ("random-junk", "W1siYSJd.x.y", other_secret, orphaned["confirm"], "é" * 50):
            answer = http.post(f"/confirm/{bad}", data={"csrf": csrf})
            assert h1(answer) == "This link is no longer valid"
        for bad in ("random-junk", orphaned["unsubscribe"], "x" * 5000):
            answer = http.post(f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"})
            assert answer.status_code == 200
        for bad in ("random-junk", orphaned["manage"]):
            assert h1(http.get(f"/manage/{bad}")) == "This link is no longer valid"
    assert subscriber_rows(site) == before


def test_neutral_pages_are_identical_for_valid_and_invalid_tokens(web_site: WebSite) -> None:
    site = web_site
    bob_id = add_subscriber(site, "bob@example.org")
    add_subscriber(site, "suppressed@example.org")
    with session_scope(site.engine) as session:
        gone = store.subscriber_by_email(session, "suppressed@example.org")
        gone.suppressed_at = site.clock()
        gone.suppressed_reason = "hard bounces"
        session.add(gone)
    confirm = f"/confirm/{token(site, 'confirm', bob_id, 'bob@example.org')}"
    unsubscribe = f"/unsubscribe/{token(site, 'unsubscribe', bob_id, 'bob@example.org')}"
    with client(site) as http:
        csrf = csrf_of(http)
        # Bob is confirmed already: his valid token does nothing more than a forged one.
        valid = http.post(confirm, data={"csrf": csrf})
        forged = http.post("/confirm/forged", data={"csrf": csrf})
        assert valid.content == forged.content
        assert http.get(confirm).content == http.get("/confirm/forged").content
        assert http.post(unsubscribe, data={"csrf": csrf}).status_code == 200
        again = http.post(unsubscribe, data={"csrf": csrf})
        assert again.content == http.post("/unsubscribe/forged", data={"csrf": csrf}).content
        assert http.get(unsubscribe).content == http.get("/unsubscribe/forged").content
        # Sign-ups: a new, a subscribed and a suppressed address look alike.
        pages = {
            subscribe(http, address).content
            for address in ("new@example.org", "bob@example.org", "suppressed@example.org")
        }
        assert len(pages) == 1
    # Two visitors, one with the valid link, one with a forged one: only the csrf differs.
    with client(site) as first, client(site) as second:
        for path in (confirm, unsubscribe):
            kind = path.split("/")[1]
            mine, theirs = first.get(path).text, second.get(f"/{kind}/forged").text
            assert mine != theirs
            assert CSRF_FIELD.sub("", mine) == CSRF_FIELD.sub("", theirs)


def test_get_never_changes_state(web_site: WebSite) -> None:
    site = web_site
    ada_id = add_subscriber(site, "ada@example.org", confirmed=False)
    bob_id = add_subscriber(site, "bob@example.org")
    before = subscriber_rows(site)
    with client(site) as http:
        for path in (
            f"/confirm/{token(site, 'confirm', ada_id, 'ada@example.org')}",
            f"/unsubscribe/{token(site, 'unsubscribe', bob_id, 'bob@example.org')}",
            f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}",
            "/",
            "/api/query-check?queries=llm",
        ):
            assert http.get(path).status_code == 200
    assert subscriber_rows(site) == before


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
        '<span class="byline">Ada Lovelace, Émilie du Châtelet, &lt;b&gt;Bold&lt;/b&gt; et al. — '
        "Mar 12, 2026 · cs.CL · cs.LG · 0 upvotes</span>",
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
