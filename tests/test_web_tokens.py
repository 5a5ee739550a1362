"""Links and forms that must not be forged: CSRF, unsubscribing, token scope and expiry, and
the neutral pages, against the app under uvicorn."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from digestd import store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.store import signup
from digestd.tokens import make_token
from tests.support.web_pages import (
    CSRF_FIELD,
    add_subscriber,
    client,
    csrf_of,
    h1,
    sign_up_form,
    subscribe,
    subscriber,
    subscriber_rows,
    token,
)
from tests.support.web_server import (
    WebSite,
    running_app,
    web_site_fixture,  # noqa: F401  (the web_site fixture)
)

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
