"""Signed link tokens: scoped to a purpose, bound to the address, refused when forged."""

from __future__ import annotations

import pytest

from digestd.tokens import TokenClaim, link_url, make_token, read_claim, read_token, unsubscribe_url

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


def test_a_token_can_name_a_reference_and_old_tokens_still_read() -> None:
    with_reference = make_token(SECRET, "confirm", 6, "e2@example.org", reference="ab" * 16)
    claim = read_claim(SECRET, "confirm", with_reference, email_of=PEOPLE.get)
    assert claim == TokenClaim(6, "ab" * 16)
    assert read_token(SECRET, "confirm", with_reference, email_of=PEOPLE.get) == 6
    plain = make_token(SECRET, "confirm", 6, "e2@example.org")
    assert read_claim(SECRET, "confirm", plain, email_of=PEOPLE.get) == TokenClaim(6, None)
    # The reference is signed with the rest: a token naming another cannot be made from it.
    other = make_token("other-secret", "confirm", 6, "e2@example.org", reference="cd" * 16)
    assert read_claim(SECRET, "confirm", other, email_of=PEOPLE.get) is None
    assert read_claim(SECRET, "confirm", with_reference, email_of={6: "x@example.org"}.get) is None
    url = link_url("https://d.example.org", SECRET, "confirm", 6, "e2@example.org", reference="n1")
    token = url.rsplit("/", 1)[1]
    assert read_claim(SECRET, "confirm", token, email_of=PEOPLE.get) == TokenClaim(6, "n1")
    with pytest.raises(ValueError):
        make_token(SECRET, "confirm", 6, "e2@example.org", reference="x" * 65)
