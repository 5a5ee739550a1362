"""Addresses mail servers refuse are refused at the door: more than 64 octets before the @ or
more than 254 in all (RFC 5321 4.5.3.1), by the sign-up form and by `subscriber add`, at the
exact boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.conftest import CliResult
from tests.support.web_pages import client, subscribe, subscriber, subscriber_rows
from tests.support.web_server import WebSite, web_site_fixture  # noqa: F401  (the web_site fixture)


def local_part(octets: int) -> str:
    """An address with ``octets`` before the @."""
    return "a" * octets + "@example.org"


def whole(octets: int) -> str:
    """An address of ``octets`` in all, with the longest local part allowed."""
    domain_length = octets - 65  # 64 octets and the @
    labels = ["b" * 63, "c" * 63, "d" * (domain_length - 63 - 63 - 2 - 4)]  # dots, ".org"
    address = "a" * 64 + "@" + ".".join(labels) + ".org"
    assert len(address) == octets
    return address


FITS = [local_part(64), whole(254)]
TOO_LONG = [(local_part(65), "65 octets before the @"), (whole(255), "too long")]


@pytest.mark.parametrize("address", FITS, ids=["local-64", "all-254"])
def test_the_longest_addresses_sign_up(web_site: WebSite, address: str) -> None:
    with client(web_site) as http:
        answer = subscribe(http, address)
    assert answer.status_code == 200
    found = subscriber(web_site, address)
    assert found is not None and found.confirmed_at is None


@pytest.mark.parametrize(("address", "reason"), TOO_LONG, ids=["local-65", "all-255"])
def test_one_octet_more_is_a_form_error_next_to_the_email_field(
    web_site: WebSite, address: str, reason: str
) -> None:
    with client(web_site) as http:
        answer = subscribe(http, address)
    assert answer.status_code == 400
    error = re.search(
        r'name="email"[^>]*aria-invalid="true">\s*<p class="error" id="email-error">([^<]*)</p>',
        answer.text,
    )
    assert error is not None and reason in error.group(1)
    assert len(error.group(1)) < 200  # the address is shown cut short, not in full
    assert subscriber_rows(web_site) == []


@pytest.mark.parametrize("address", FITS, ids=["local-64", "all-254"])
def test_subscriber_add_takes_the_longest_addresses(
    cli: Callable[..., CliResult], address: str
) -> None:
    assert cli("init").code == 0
    result = cli("subscriber", "add", address, "--query", "oracle")
    assert result.code == 0, result.err
    assert cli("subscriber", "show", address).code == 0


@pytest.mark.parametrize(("address", "reason"), TOO_LONG, ids=["local-65", "all-255"])
def test_subscriber_add_refuses_one_octet_more_in_one_line(
    cli: Callable[..., CliResult], address: str, reason: str
) -> None:
    assert cli("init").code == 0
    result = cli("subscriber", "add", address, "--query", "oracle")
    assert result.code == 1
    assert result.err.startswith("error: email ") and reason in result.err
    assert len(result.err.splitlines()) == 1
    assert "added" not in result.out
    assert address not in cli("subscriber", "list", "--json").out
