"""Pages and sign-up mails in the reader's language: a visitor's by ?lang= or Accept-Language,
a subscriber's own pages in the language they chose; no English fixed word left in German."""

from __future__ import annotations

import html
import re
import time
from datetime import date, timedelta
from email.message import EmailMessage

import pytest
from babel.messages.pofile import read_po

from digestd.i18n import LOCALE_DIR, accepted_language, catalog_path, translations
from digestd.validation import LANGUAGES
from tests.support.web_pages import add_subscriber as add_person
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
    token,
)
from tests.support.web_server import WebSite, web_site_fixture  # noqa: F401

HTML_LANG = re.compile(r'<html lang="([a-z]+)">')
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|<[^>]+>")


def mails_to(site: WebSite, address: str, count: int) -> list[EmailMessage]:
    """The mails ``address`` received, once there are ``count`` of them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mails = [parse(m.data) for m in site.smtp.messages if address in m.rcpt_tos]
        if len(mails) >= count:
            assert len(mails) == count
            return mails
        time.sleep(0.02)
    raise AssertionError(f"{address} did not receive {count} mails")


def english_phrases() -> set[str]:
    """Every fixed English text of more than one word the catalog knows, cut at its
    placeholders and tags."""
    with (LOCALE_DIR / "messages.pot").open("rb") as source:
        catalog = read_po(source)
    phrases = set()
    for message in catalog:
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        for msgid in ids:
            for piece in PLACEHOLDER.split(msgid):
                piece = piece.strip(" .,:;")
                if " " in piece:
                    phrases.add(piece)
    return phrases


def visible_text(page: str) -> str:
    """A page's words as a reader sees them (tags dropped, entities read, spaces joined)."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def english_left(page: str) -> list[str]:
    text = visible_text(page)
    return sorted(phrase for phrase in english_phrases() if " ".join(phrase.split()) in text)


def test_every_language_has_a_complete_catalog() -> None:
    for language in LANGUAGES:
        if language == "en":
            continue
        with catalog_path(language).open("rb") as source:
            catalog = read_po(source, locale=language)
        empty = [m.id for m in catalog if m.id and not all(m.string or [""])]
        fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
        assert (empty, fuzzy) == ([], []), language
        assert translations(language).gettext("Keywords") != "Keywords"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr, de;q=0.8, en;q=0.5", "de"),
        ("en-GB,de;q=0.9", "en"),
        ("de;q=0.1, en;q=0.9", "en"),
        ("fr, it", "en"),
        ("de;q=0, fr", "en"),
        ("", "en"),
        ("de;q=bogus, en", "en"),
    ],
)
def test_accept_language_picks_the_best_language_digestd_speaks(header: str, expected: str) -> None:
    assert accepted_language(header, "en") == expected


def test_the_front_page_speaks_the_visitors_language(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models", "Papers about big models.")
    with client(site) as http:
        english = http.get("/")
        by_query = http.get("/?lang=de")
        by_header = http.get("/", headers={"Accept-Language": "de-AT,de;q=0.9,en;q=0.5"})
        unknown = http.get("/?lang=xx", headers={"Accept-Language": "fr"})
    assert HTML_LANG.search(english.text).group(1) == "en"  # type: ignore[union-attr]
    assert "New research papers, chosen for you" in english.text
    assert "No papers in the last 7 days." in visible_text(english.text)
    assert len(english_left(english.text)) > 10  # the check finds English where there is some
    for german in (by_query, by_header):
        assert german.status_code == 200
        assert HTML_LANG.search(german.text).group(1) == "de"  # type: ignore[union-attr]
        assert h1(german) == "Neue Forschungsarbeiten, für Sie ausgewählt"
        assert '<option value="de" lang="de" selected>Deutsch</option>' in german.text
        assert "Keine Arbeiten in den letzten 7 Tagen." in german.text
        assert english_left(german.text) == []
    assert HTML_LANG.search(unknown.text).group(1) == "en"  # type: ignore[union-attr]


def test_a_german_subscribers_own_pages_are_german(web_site: WebSite) -> None:
    site = web_site
    add_topic(site, "llm", "language model", "Language models")
    bob_id = add_person(site, "bob@example.org", topic_slugs=["llm"], language="de")
    manage = f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"
    unsubscribe = f"/unsubscribe/{token(site, 'unsubscribe', bob_id, 'bob@example.org')}"
    pause = f"/pause/{token(site, 'pause', bob_id, 'bob@example.org')}"
    # The browser asks for English: the subscriber's own choice wins.
    with client(site) as http:
        http.headers["Accept-Language"] = "en"
        pages = [http.get(path) for path in (manage, unsubscribe, pause)]
        forged = http.get("/manage/forged")
    for page in pages:
        assert page.status_code == 200
        assert HTML_LANG.search(page.text).group(1) == "de"  # type: ignore[union-attr]
        assert english_left(page.text) == [], page.url
    assert h1(pages[0]) == "Ihre Einstellungen"
    assert '<option value="fri">Freitag</option>' in pages[0].text
    assert '<option value="newest">Neueste zuerst</option>' in pages[0].text
    assert 'data-check-one="Das hätte in den letzten 7 Tagen {num} Arbeit gefunden."' in (
        pages[0].text
    )
    # A link that does not work is in the visitor's language.
    assert HTML_LANG.search(forged.text).group(1) == "en"  # type: ignore[union-attr]


def test_the_query_check_answers_in_the_pages_language(web_site: WebSite) -> None:
    with client(web_site) as http:
        long_text = "x " * 1500
        german = http.get("/api/query-check", params={"queries": long_text, "lang": "de"})
        english = http.get("/api/query-check", params={"queries": long_text})
    assert german.json()["error"].startswith("Die Suchbegriffe sind zu lang")
    assert english.json()["error"].startswith("The keywords are too long")


def test_a_sign_up_in_german_with_an_order_carries_through_confirmation(
    web_site: WebSite,
) -> None:
    site = web_site
    with client(site) as http:
        answer = subscribe(
            http, "ada@example.org", language="de", digest_order="newest", weekday="fri"
        )
        assert answer.status_code == 200
        assert h1(answer) == "Sehen Sie in Ihr Postfach"
        pending = subscriber(site, "ada@example.org")
        assert pending is not None
        assert (pending.language, pending.digest_order) == ("de", "newest")
        (mail,) = mails_to(site, "ada@example.org", 1)
        assert mail["Subject"].startswith("Bestätigen Sie Ihr Abonnement")
        text = plain_text(mail)
        assert text.startswith("Guten Tag,")
        html_part = mail.get_body(preferencelist=("html",))
        assert html_part is not None and '<html lang="de">' in str(html_part.get_content())
        confirm = path_of(link_in(text, "confirm"))
        page = http.get(confirm)
        assert HTML_LANG.search(page.text).group(1) == "de"  # type: ignore[union-attr]
        done = http.post(confirm, data={"csrf": csrf_of(http, confirm)})
    assert h1(done) == "Sie sind angemeldet"
    assert "Neueste zuerst" in done.text
    assert english_left(done.text) == []
    confirmed = subscriber(site, "ada@example.org")
    assert confirmed is not None and confirmed.confirmed_at is not None
    assert (confirmed.language, confirmed.digest_order) == ("de", "newest")


@pytest.mark.parametrize(("field", "value"), [("language", "fr"), ("digest_order", "random")])
def test_an_unknown_language_or_order_is_an_error_next_to_its_field(
    web_site: WebSite, field: str, value: str
) -> None:
    with client(web_site) as http:
        answer = subscribe(http, "ada@example.org", **{field: value})
    assert answer.status_code == 400
    assert f'<p class="error" id="{field}-error">' in answer.text
    assert subscriber_rows(web_site) == []


def test_the_manage_page_saves_language_and_order(web_site: WebSite) -> None:
    site = web_site
    bob_id = add_person(site, "bob@example.org")
    url = f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"
    form = {"queries": "oracle", "frequency": "daily", "send_hour": "7", "timezone": "UTC"}
    form |= {"weekday": "mon", "language": "de", "digest_order": "upvotes"}
    with client(site) as http:
        saved = http.post(url, data={**form, "csrf": csrf_of(http, url)})
        assert saved.status_code == 200
        assert "Einstellungen gespeichert" in saved.text  # the new language at once
        assert '<option value="upvotes" selected>Meiste Upvotes zuerst</option>' in saved.text
        bob = subscriber(site, "bob@example.org")
        assert bob is not None and (bob.language, bob.digest_order) == ("de", "upvotes")
        # A form without the two fields (an old page) keeps them.
        del form["language"], form["digest_order"]
        assert http.post(url, data={**form, "csrf": csrf_of(http, url)}).status_code == 200
    kept = subscriber(site, "bob@example.org")
    assert kept is not None and (kept.language, kept.digest_order) == ("de", "upvotes")


def test_an_already_subscribed_mail_is_in_the_subscribers_language(web_site: WebSite) -> None:
    site = web_site
    add_person(site, "bob@example.org", language="de")
    site.clock.advance(timedelta(days=1))
    with client(site) as http:
        assert subscribe(http, "bob@example.org", language="en").status_code == 200
    (mail,) = mails_to(site, "bob@example.org", 1)
    assert mail["Subject"].startswith("Sie sind bereits bei")
    assert "Suchbegriffe, Themen oder Zeitplan" in " ".join(plain_text(mail).split())


def test_dates_are_written_for_the_language() -> None:
    from digestd.i18n import long_date

    assert long_date(date(2026, 3, 14), "de") == "14. März 2026"
    assert long_date(date(2026, 3, 14), "en") == "March 14, 2026"


def test_error_pages_speak_the_visitors_language(web_site: WebSite) -> None:
    with client(web_site) as http:
        german = http.get("/no-such-page", headers={"Accept-Language": "de"})
        english = http.get("/no-such-page?lang=en")
    assert german.status_code == 404
    assert "Seite nicht gefunden" in german.text and 'lang="de"' in german.text
    assert english_left(german.text) == []
    assert "Page not found" in english.text
