"""Signed link tokens: scoped to a purpose, bound to the address, refused when forged."""

from __future__ import annotations

from digestd.tokens import make_token, read_token, unsubscribe_url

SECRET = "test-secret"
PEOPLE = {6: "e2@example.org"}


def test_token_round_trip_and_scope() -> None:
    token = make_token(SECRET, "unsubscribe", 6, "E2@example.org")
    assert read_token(SECRET, "unsubscribe", token, email_of=PEOPLE.get) == 6
    assert read_token(SECRET, "manage", token, email_of=PEOPLE.get) is None
    assert read_token("other-secret", "unsubscribe", token, email_of=PEOPLE.get) is None
    assert read_token(SECRET, "unsubscribe", token[:-2] + "xx", email_of=PEOPLE.get) is None
    assert read_token(SECRET, "unsubscribe", "garbage", email_of=PEOPLE.get) is None


def test_old_link_does_not_reach_the_next_owner_of_a_reused_id() -> None:
    token = make_token(SECRET, "unsubscribe", 6, "e2@example.org")
    assert read_token(SECRET, "unsubscribe", token, email_of={6: "new@example.org"}.get) is None
    assert read_token(SECRET, "unsubscribe", token, email_of={}.get) is None


def test_expired_token_is_refused() -> None:
    token = make_token(SECRET, "confirm", 6, "e2@example.org")
    assert read_token(SECRET, "confirm", token, email_of=PEOPLE.get, max_age=3600) == 6
    assert read_token(SECRET, "confirm", token, email_of=PEOPLE.get, max_age=-1) is None


def test_unsubscribe_url_is_https_under_base() -> None:
    url = unsubscribe_url("https://d.example.org/", SECRET, 6, "e2@example.org")
    assert url.startswith("https://d.example.org/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert read_token(SECRET, "unsubscribe", token, email_of=PEOPLE.get) == 6
