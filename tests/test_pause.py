"""Pausing for some days: the pause page (GET changes nothing, the POST pauses or resumes),
the planner skipping a subscriber until their pause ends, and the CLI's --pause-days,
--language and --order."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from digestd.i18n import long_date
from digestd.jobs.plan_window import select_due
from digestd.models import Subscriber
from tests.conftest import CliResult
from tests.support.web_pages import (
    add_subscriber,
    client,
    csrf_of,
    h1,
    subscriber,
    subscriber_rows,
    token,
)
from tests.support.web_server import WebSite, web_site_fixture  # noqa: F401

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # a Wednesday, after the default 07:00 send hour


def person(**fields: object) -> Subscriber:
    values: dict[str, object] = {
        "id": 1,
        "email": "p1@example.org",
        "created_at": NOW - timedelta(days=30),
        "confirmed_at": NOW - timedelta(days=30),
    }
    return Subscriber(**(values | fields))


def due(subscriber: Subscriber, now: datetime, **options: bool) -> bool:
    return bool(select_due([subscriber], last_keys={}, open_rows={}, now=now, **options).due)


def test_the_planner_skips_a_subscriber_until_their_pause_ends() -> None:
    paused = person(paused_until=date(2026, 3, 6))
    assert not due(paused, NOW)
    assert not due(paused, NOW + timedelta(days=1))
    assert due(paused, NOW + timedelta(days=2))  # on paused_until itself they are back
    assert due(paused, NOW, include_paused=True)
    assert due(person(paused_until=date(2026, 3, 4)), NOW)  # a pause that ended today


def test_the_end_of_a_pause_is_the_subscribers_own_date() -> None:
    # 12:00 UTC on 4 March is already 5 March in Auckland: their pause until the 5th is over.
    noon = NOW.replace(hour=12)
    auckland = person(paused_until=date(2026, 3, 5), timezone="Pacific/Auckland", send_hour=0)
    assert due(auckland, noon)
    assert not due(person(paused_until=date(2026, 3, 5)), noon)


def test_the_pause_page_changes_nothing_and_its_post_pauses(web_site: WebSite) -> None:
    site = web_site
    site.clock.now = NOW
    bob_id = add_subscriber(site, "bob@example.org", timezone="Europe/Berlin")
    url = f"/pause/{token(site, 'pause', bob_id, 'bob@example.org')}"
    before = subscriber_rows(site)
    with client(site) as http:
        page = http.get(url)
        assert page.status_code == 200
        assert h1(page) == "Pause your digests"
        for days in ("7", "14", "30"):
            assert f'name="days" value="{days}"' in page.text
        assert "Resume now" not in page.text  # not paused: nothing to resume
        assert http.head(url).status_code == 200
        assert subscriber_rows(site) == before
        forged = http.post(url, data={"days": "7", "csrf": "x" * 40})
        assert forged.status_code == 403
        wrong = http.post(url, data={"days": "3", "csrf": csrf_of(http, url)})
        assert wrong.status_code == 400 and 'id="days-error"' in wrong.text
        assert subscriber_rows(site) == before
        paused = http.post(url, data={"days": "14", "csrf": csrf_of(http, url)})
    assert paused.status_code == 200
    assert h1(paused) == f"Digests paused until {long_date(date(2026, 3, 18), 'en')}"
    bob = subscriber(site, "bob@example.org")
    assert bob is not None and bob.paused_until == date(2026, 3, 18) and bob.active


def test_the_manage_page_shows_the_pause_and_resumes(web_site: WebSite) -> None:
    site = web_site
    site.clock.now = NOW
    bob_id = add_subscriber(site, "bob@example.org", language="de")
    with client(site) as http:
        pause = f"/pause/{token(site, 'pause', bob_id, 'bob@example.org')}"
        http.post(pause, data={"days": "7", "csrf": csrf_of(http, pause)})
        manage = f"/manage/{token(site, 'manage', bob_id, 'bob@example.org')}"
        page = http.get(manage)
        assert "Übersichten pausiert bis 11. März 2026" in page.text
        assert "Jetzt fortsetzen" in page.text
        paused_page = http.get(pause)
        assert "Jetzt fortsetzen" in paused_page.text
        resumed = http.post(pause, data={"days": "0", "csrf": csrf_of(http, manage)})
        assert h1(resumed) == "Ihre Übersichten kommen wieder"
        assert "pausiert bis" not in http.get(manage).text
    bob = subscriber(site, "bob@example.org")
    assert bob is not None and bob.paused_until is None


def test_a_forged_pause_link_is_the_neutral_page(web_site: WebSite) -> None:
    site = web_site
    bob_id = add_subscriber(site, "bob@example.org")
    before = subscriber_rows(site)
    manage_token = token(site, "manage", bob_id, "bob@example.org")  # meant for another page
    with client(site) as http:
        for path in ("/pause/forged", f"/pause/{manage_token}"):
            assert h1(http.get(path)) == "This link is no longer valid"
            answer = http.post(path, data={"days": "7", "csrf": csrf_of(http, "/")})
            assert h1(answer) == "This link is no longer valid"
    assert subscriber_rows(site) == before


# The CLI


@pytest.fixture
def ready(cli: Callable[..., CliResult]) -> Callable[..., CliResult]:
    assert cli("init").code == 0
    return cli


def listed(ready: Callable[..., CliResult]) -> dict[str, object]:
    rows = json.loads(ready("subscriber", "list", "--json").out)
    assert len(rows) == 1
    return dict(rows[0])


def test_cli_sets_language_order_and_pause(ready: Callable[..., CliResult]) -> None:
    added = ready("subscriber", "add", "a@example.org", "-q", "oracle", "--language", "de")
    assert added.code == 0, added.err
    row = listed(ready)
    assert (row["language"], row["digest_order"], row["paused_until"]) == ("de", "relevance", None)
    edited = ready(
        "subscriber", "edit", "a@example.org", "--order", "upvotes", "--pause-days", "10"
    )
    assert edited.code == 0, edited.err
    row = listed(ready)
    today = datetime.now(UTC).date()  # the subscriber's timezone is UTC
    assert row["digest_order"] == "upvotes"
    assert row["paused_until"] == (today + timedelta(days=10)).isoformat()
    assert str(row["status"]).startswith("paused until")
    shown = ready("subscriber", "show", "a@example.org").out
    assert "upvotes" in shown and (today + timedelta(days=10)).isoformat() in shown
    sent = ready("send", "--now", "--to", "a@example.org")
    assert sent.code != 0 and "paused until" in sent.err
    assert ready("subscriber", "edit", "a@example.org", "--pause-days", "0").code == 0
    row = listed(ready)
    assert (row["paused_until"], row["status"], row["language"]) == (None, "active", "de")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "b@example.org", "-q", "x", "--language", "fr"), "--language 'fr'"),
        (("add", "b@example.org", "-q", "x", "--order", "random"), "--order 'random'"),
        (("edit", "a@example.org", "--language", "xx"), "--language 'xx'"),
        (("edit", "a@example.org", "--order", "oldest"), "--order 'oldest'"),
        (("edit", "a@example.org", "--pause-days", "-1"), "--pause-days -1"),
        (("edit", "a@example.org", "--pause-days", "1000"), "--pause-days 1000"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(
    ready: Callable[..., CliResult], args: tuple[str, ...], message: str
) -> None:
    assert ready("subscriber", "add", "a@example.org", "-q", "oracle").code == 0
    before = listed(ready)
    result = ready("subscriber", *args)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.err
    assert listed(ready) == before
