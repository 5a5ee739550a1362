"""The sign-up and preference forms: what they hold as typed, and checking it field by field.

Pure: values in, values out. Each problem is reported against the field it concerns, so a page
can show it next to that field and keep everything else the visitor typed.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from digestd.errors import DigestError
from digestd.i18n import N_, translations
from digestd.models import Subscriber
from digestd.store.signup import Preferences
from digestd.validation import (
    DIGEST_ORDERS,
    FREQUENCIES,
    LANGUAGES,
    WEEKDAYS,
    check_queries,
    normalize_email,
)

# Caps on what a visitor may type: far above any real use, low enough that a request cannot
# make the server parse and match megabytes of queries.
MAX_QUERY_TEXT = 2000
MAX_QUERY_LINES = 20
MAX_EMAIL = 320
MAX_FIELD = 100
WEEKDAY_NAMES = dict(
    zip(
        WEEKDAYS,
        (
            N_("Monday"),
            N_("Tuesday"),
            N_("Wednesday"),
            N_("Thursday"),
            N_("Friday"),
            N_("Saturday"),
            N_("Sunday"),
        ),
        strict=True,
    )
)
ORDER_NAMES = dict(
    zip(
        DIGEST_ORDERS,
        (N_("Most relevant first"), N_("Newest first"), N_("Most upvoted first")),
        strict=True,
    )
)
# Each language is named in itself, so a reader finds their own whatever the page's language.
LANGUAGE_NAMES = dict(zip(LANGUAGES, ("English", "Deutsch"), strict=True))


def translated_names(names: dict[str, str], language: str) -> dict[str, str]:
    """``names`` (WEEKDAY_NAMES, ORDER_NAMES) with their labels in ``language``."""
    gettext = translations(language).gettext
    return {value: gettext(label) for value, label in names.items()}


def clean_text(value: str) -> str:
    """``value`` as text that can be written out as UTF-8 (a form decoded with an odd charset
    can hold lone surrogates)."""
    return value.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class PreferencesForm:
    """A sign-up or preference form's fields as typed, to check them or show them again."""

    email: str = ""
    queries: str = ""
    topics: tuple[str, ...] = ()
    frequency: str = "daily"
    send_hour: str = "7"
    timezone: str = "UTC"
    weekday: str = "mon"
    paused: bool = False
    revised_papers: bool = False
    language: str = "en"
    digest_order: str = "relevance"

    @property
    def topic_set(self) -> frozenset[str]:
        """The chosen topic slugs, for checking boxes."""
        return frozenset(self.topics)


@dataclass(frozen=True)
class FormCheck:
    """A checked form: the preferences it asks for (None when any field is wrong), the
    address, and one message per wrong field."""

    preferences: Preferences | None
    email: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def read_form(
    *,
    email: str = "",
    queries: str = "",
    topics: Sequence[str] = (),
    frequency: str = "",
    send_hour: str = "",
    timezone: str = "",
    weekday: str = "",
    paused: str = "",
    revised_papers: str = "",
    language: str = "en",
    digest_order: str = "relevance",
) -> PreferencesForm:
    """The form as typed, made safe to keep and show (values are cut at generous lengths)."""
    return PreferencesForm(
        email=clean_text(email[: MAX_EMAIL + 1]),
        queries=clean_text(queries[: MAX_QUERY_TEXT + 1]),
        topics=tuple(dict.fromkeys(clean_text(t[:MAX_FIELD]) for t in topics[:200])),
        frequency=clean_text(frequency[:MAX_FIELD]),
        send_hour=clean_text(send_hour[:MAX_FIELD]),
        timezone=clean_text(timezone[:MAX_FIELD]),
        weekday=clean_text(weekday[:MAX_FIELD]),
        paused=bool(paused),
        revised_papers=bool(revised_papers),
        language=clean_text(language[:MAX_FIELD]),
        digest_order=clean_text(digest_order[:MAX_FIELD]),
    )


def default_form(
    *, timezone: str, send_hour: int, weekday: str, language: str = "en"
) -> PreferencesForm:
    """An empty sign-up form with the site's default schedule, in ``language``."""
    return PreferencesForm(
        timezone=timezone, send_hour=str(send_hour), weekday=weekday, language=language
    )


def subscriber_form(
    subscriber: Subscriber, queries: Sequence[str], topic_slugs: Sequence[str]
) -> PreferencesForm:
    """A subscriber's current preferences as a filled-in form."""
    return PreferencesForm(
        email=subscriber.email,
        queries="\n".join(queries),
        topics=tuple(topic_slugs),
        frequency=subscriber.frequency,
        send_hour=str(subscriber.send_hour),
        timezone=subscriber.timezone,
        weekday=subscriber.weekday,
        paused=not subscriber.active,
        revised_papers=subscriber.revised_papers,
        language=subscriber.language,
        digest_order=subscriber.digest_order,
    )


def query_lines(text: str) -> list[str]:
    """The queries in a keywords field: one per non-blank line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def query_text_error(text: str, language: str = "en") -> str | None:
    """What is wrong with a keywords field (too long, too many lines, a query that does not
    parse, naming its line), or None; in ``language`` (the parser's own words stay English)."""
    _ = translations(language).gettext
    if len(text) > MAX_QUERY_TEXT:
        return _("The keywords are too long: at most %(count)s characters.") % {
            "count": MAX_QUERY_TEXT
        }
    lines = query_lines(text)
    if len(lines) > MAX_QUERY_LINES:
        return _("At most %(count)s queries, one per line.") % {"count": MAX_QUERY_LINES}
    for number, line in enumerate(lines, start=1):
        try:
            check_queries([line])
        except DigestError as exc:
            if len(lines) == 1:
                return f"{exc}"
            return _("Line %(number)s: %(error)s") % {"number": number, "error": exc}
    return None


def check_form(
    form: PreferencesForm, *, topic_slugs: Collection[str], with_email: bool, language: str = "en"
) -> FormCheck:
    """Check every field of ``form`` against the known topics; the preferences it asks for if
    all are right. The messages are in ``language``."""
    _ = translations(language).gettext
    errors: dict[str, str] = {}
    address = ""
    if with_email:
        if len(form.email) > MAX_EMAIL:
            errors["email"] = _("This address is too long.")
        else:
            try:
                address = normalize_email(form.email)
            except DigestError as exc:
                # The validator's reason (octets, characters) exists in English only: other
                # languages say the address is wrong in their own words.
                errors["email"] = (
                    exc.message if language == "en" else _("This is not a valid email address.")
                )
    query_error = query_text_error(form.queries, language)
    if query_error:
        errors["queries"] = query_error
    unknown = [slug for slug in form.topics if slug not in topic_slugs]
    if unknown:
        errors["topics"] = _("There is no topic %(slug)s.") % {"slug": repr(unknown[0])}
    if not query_error and not unknown and not query_lines(form.queries) and not form.topics:
        errors["queries"] = _("Choose at least one topic or write keywords.")
    if form.frequency not in FREQUENCIES:
        errors["frequency"] = _("Choose daily or weekly.")
    hour = form.send_hour.strip()
    if not (hour.isascii() and hour.isdigit() and 0 <= int(hour) <= 23):
        errors["send_hour"] = _("Choose an hour from 0 to 23.")
    if form.timezone not in all_timezones():
        errors["timezone"] = _("Choose a time zone from the list.")
    if form.weekday not in WEEKDAYS:
        errors["weekday"] = _("Choose a day of the week.")
    if form.language not in LANGUAGES:
        errors["language"] = _("Choose a language from the list.")
    if form.digest_order not in DIGEST_ORDERS:
        errors["digest_order"] = _("Choose an order from the list.")
    if errors:
        return FormCheck(None, address, errors)
    preferences = Preferences(
        queries=query_lines(form.queries),
        topic_slugs=list(form.topics),
        frequency=form.frequency,
        timezone=form.timezone,
        send_hour=int(hour),
        weekday=form.weekday,
        paused=form.paused,
        revised_papers=form.revised_papers,
        language=form.language,
        digest_order=form.digest_order,
    )
    return FormCheck(preferences, address)


@lru_cache(maxsize=1)
def all_timezones() -> frozenset[str]:
    """Every IANA time zone name this system knows."""
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=1)
def listed_timezones() -> tuple[str, ...]:
    """The time zones offered in the form: the regional names and UTC, sorted."""
    regional = (
        name
        for name in all_timezones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/"))
    )
    return ("UTC", *sorted(regional))


def timezone_choices(current: str) -> tuple[str, ...]:
    """The time zones to offer, with ``current`` among them even if it is an unusual one."""
    listed = listed_timezones()
    return listed if current in listed or current not in all_timezones() else (current, *listed)


def describe_matches(matches: int, days: int, language: str) -> str:
    """How many papers the keywords would have matched, in words of ``language``."""
    return translations(language).ngettext(
        "This would have matched %(num)s paper in the last %(days)s days.",
        "This would have matched %(num)s papers in the last %(days)s days.",
        matches,
    ) % {"num": matches, "days": days}


def check_phrases(days: int, language: str) -> tuple[str, str]:
    """The sentence of ``describe_matches`` for one paper and for several, with ``{num}``
    where site.js puts the count."""
    one, many = (
        translations(language).ngettext(
            "This would have matched %(num)s paper in the last %(days)s days.",
            "This would have matched %(num)s papers in the last %(days)s days.",
            count,
        )
        % {"num": "{num}", "days": days}
        for count in (1, 2)
    )
    return one, many
