"""The checks settings pass at start beyond their types: ranges, choices, address and URL
shapes. One ConfigError line names the file, section and key of the first value refused."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from digestd.errors import ConfigError, InputError
from digestd.validation import check_timezone

if TYPE_CHECKING:
    from digestd.config import Settings

_URL_UNSAFE = re.compile(r"[\s<>\"'\\\x00-\x1f\x7f]")
# An EHLO name (RFC 5321 4.1.1.1): a domain name, or an address literal such as [192.0.2.1].
_HELO_NAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?|\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]"
)
_CONTACT = re.compile(r"[^\s<>()\"',;\\]+@[^\s<>()\"',;\\]+")


# Keys whose value must be above 0, and those that may also be 0.
_POSITIVE = (
    ("digest", "max_papers"),
    ("digest", "lookback_days"),
    ("digest", "snippet_chars"),
    ("trending", "papers"),
    ("feeds", "max_entries"),
    ("feeds", "lookback_days"),
    ("smtp", "port"),
    ("smtp", "timeout"),
    ("smtp", "connections"),
    ("schedule", "ingest_interval_minutes"),
    ("schedule", "send_check_minutes"),
    ("schedule", "inbox_settle_seconds"),
    ("delivery", "retry_minutes"),
    ("delivery", "retry_max_minutes"),
    ("delivery", "give_up_hours"),
    ("delivery", "error_threshold"),
    ("delivery", "hard_bounces"),
    ("bounces", "check_minutes"),
    ("web", "port"),
    ("web", "confirm_hours"),
    ("web", "confirm_resend_minutes"),
    ("web", "subscribe_per_hour"),
    ("fetching", "stale_hours"),
    ("fetching", "timeout_seconds"),
    ("fetching", "deadline_seconds"),
    ("fetching", "max_bytes"),
    ("fetching", "retry_seconds"),
    ("fetching", "max_retry_after_seconds"),
)
_NOT_NEGATIVE = (
    ("digest", "full_entries"),
    ("trending", "min_upvotes"),
    ("delivery", "rate_per_second"),
    ("delivery", "min_free_mb"),
    ("fetching", "retries"),
    ("fetching", "spacing_seconds"),
)


def validate_settings(
    settings: Settings, source: str, *, choices_of: Iterable[tuple[str, str, tuple[str, ...]]]
) -> None:
    """Refuse settings whose values are out of range or malformed, with a one-line
    ConfigError naming ``source`` (the file, or "defaults"), the section and the key;
    ``choices_of`` lists the (section, key, allowed values) of keys with a fixed set."""
    for section, key, choices in choices_of:
        value = getattr(getattr(settings, section), key)
        if choices and value not in choices:
            raise ConfigError(
                f"{source}: [{section}] {key} = {value!r} is not one of {', '.join(choices)}"
            )
    _check_schedule(settings, source)
    _check_numbers(settings, source)
    _check_names(settings, source)
    _check_subject(settings, source)


_SUBJECT_FIELDS = {"first": "Title", "count": 2, "more": 1, "date": "Mar 14", "site": "digestd"}


def _check_subject(settings: Settings, source: str) -> None:
    """The subject pattern names only the fields a subject has, with valid braces."""
    pattern = settings.digest.subject
    try:
        pattern.format(**_SUBJECT_FIELDS)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{source}: [digest] subject = {pattern!r} is not a subject pattern ({exc!s}); "
            "use {first}, {count}, {more}, {date}, {site} and {{ }} for braces"
        ) from None


def _check_schedule(settings: Settings, source: str) -> None:
    hour = settings.schedule.default_send_hour
    if not 0 <= hour <= 23:
        raise ConfigError(f"{source}: [schedule] default_send_hour = {hour} is not an hour 0-23")
    try:
        check_timezone(settings.schedule.default_timezone)
    except InputError:
        raise ConfigError(
            f"{source}: [schedule] default_timezone = {settings.schedule.default_timezone!r} "
            "is not an IANA timezone"
        ) from None


def _check_numbers(settings: Settings, source: str) -> None:
    for section, key in _POSITIVE:
        value = getattr(getattr(settings, section), key)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{source}: [{section}] {key} = {value!r} must be a positive number")
    for section, key in _NOT_NEGATIVE:
        value = getattr(getattr(settings, section), key)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{source}: [{section}] {key} = {value!r} must be 0 or more")
    for section, port in (("smtp", settings.smtp.port), ("web", settings.web.port)):
        if port > 65535:
            raise ConfigError(f"{source}: [{section}] port = {port} is not a TCP port")


def _check_names(settings: Settings, source: str) -> None:
    """The EHLO name, the contact address and the site's base URL."""
    helo = settings.smtp.helo_name
    if helo and (len(helo) > 255 or not _HELO_NAME.fullmatch(helo)):
        raise ConfigError(
            f"{source}: [smtp] helo_name = {helo!r} is not a host name like mail.example.org "
            "or an address literal like [192.0.2.1]"
        )
    contact = settings.fetch_contact
    if settings.sources and not _CONTACT.fullmatch(contact):
        raise ConfigError(
            f"{source}: [fetching] contact = {contact!r} is not an email address like "
            "you@example.org (it is sent in the User-Agent of every request to a source)"
        )
    url = urlsplit(settings.feeds.base_url)
    if url.scheme not in ("http", "https") or not url.netloc or _URL_UNSAFE.search(url.geturl()):
        raise ConfigError(
            f"{source}: [feeds] base_url = {settings.feeds.base_url!r} must be an http(s) URL "
            "without spaces, quotes or angle brackets"
        )
