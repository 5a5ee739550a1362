"""Checks of the values people give digestd (addresses, time zones, queries, schedules), one
place for the CLI, the web forms, config loading and the store alike. Each returns the value
normalized, or raises InputError (QueryError for a query) saying what is wrong in one line."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable

import email_validator

from digestd.errors import InputError
from digestd.match import compile_query

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DIGEST_ORDERS = ("relevance", "newest", "upvotes")  # how a subscriber's digest is ordered
LANGUAGES = ("en", "de")  # of the mails and pages; each has a complete catalog
MAX_LOCAL_PART = 64  # octets before the @ (RFC 5321 4.5.3.1.1)
MAX_ADDRESS = 254  # octets in all: a 256-octet path less its angle brackets (RFC 5321, errata)


def normalize_email(address: str) -> str:
    """The address in normalized form; InputError naming the problem if it is not valid."""
    shown = address if len(address) <= 60 else address[:57] + "..."
    try:
        valid = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InputError(f"email {shown!r} is not valid: {exc}") from None
    if valid.ascii_email is None:
        # An address with a non-ASCII local part needs SMTPUTF8 end to end, which the senders
        # do not offer; accepting it would fail at every send.
        raise InputError(f"email {shown!r}: non-ASCII before the @ is not supported")
    # Mail servers refuse longer ones (RFC 5321 4.5.3.1): email-validator checks the local
    # part's length only in its strict mode, so both limits are checked here, on the address
    # as it is sent.
    local = valid.ascii_email.rpartition("@")[0]
    if len(local) > MAX_LOCAL_PART:
        raise InputError(
            f"email {shown!r} is not valid: {len(local)} octets before the @, "
            f"mail servers take at most {MAX_LOCAL_PART}"
        )
    if len(valid.ascii_email) > MAX_ADDRESS:
        raise InputError(
            f"email {shown!r} is not valid: {len(valid.ascii_email)} octets, "
            f"mail servers take at most {MAX_ADDRESS}"
        )
    return valid.ascii_email


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA timezone, else InputError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder
        raise InputError(
            f"timezone {name!r} is not an IANA timezone name such as Europe/Paris"
        ) from None
    return name


def check_queries(queries: Iterable[str]) -> list[str]:
    """The queries, each parsed to be sure it is valid (QueryError names the position)."""
    checked = []
    for query in queries:
        compile_query(query)
        checked.append(query.strip())
    return checked


def check_schedule(*, frequency: str, send_hour: int, timezone: str, weekday: str) -> None:
    """Refuse a schedule with an unknown frequency, hour, timezone or weekday."""
    if frequency not in FREQUENCIES:
        raise InputError(f"frequency {frequency!r} must be daily or weekly")
    if not 0 <= send_hour <= 23:
        raise InputError(f"send hour {send_hour} must be 0-23")
    check_timezone(timezone)
    if weekday not in WEEKDAYS:
        raise InputError(f"weekday {weekday!r} must be one of {', '.join(WEEKDAYS)}")
