"""What a digest mail says, worked out from a ``Digest`` in the reader's language: the subject,
the preheader, the header line, the footer's reason, and each paper as the templates show it
(title and snippet cut and highlighted, byline, why it matched, links). Pure functions; the
renderer caches each paper's view, since one day's papers go to many readers."""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import markupsafe

from digestd.digest import Digest, DigestEntry
from digestd.formatting import HIT_CLOSE
from digestd.i18n import N_, locale_of, medium_date, short_date
from digestd.snippets import (
    breakable,
    clean_text,
    cut_point,
    highlighted_field,
    readable_latex,
)

if TYPE_CHECKING:
    from digestd.config import Settings

DEFAULT_SUBJECT = N_("{first} and {more} more papers — {date}")
SUBJECT_LIMIT = 78  # characters of a subject before encoding (RFC 5322's line length)
PREHEADER_LIMIT = 90  # characters an inbox shows beside the subject, give or take
TITLE_LIMIT = 200  # characters of a title shown; hostile titles are cut at a word
TERMS_SHOWN = 6  # matched terms named in a paper's reason line
SOURCES_SHOWN = 3  # queries and topics named there
LABEL_LIMIT = 60  # characters of a query or topic named there
MORE_LISTED = 15  # papers past the cap listed by title in the mail; the rest are counted
# Invisible characters after the preheader, so inboxes do not fill the preview with the body.
PREHEADER_PADDING = markupsafe.Markup("&#847;&zwnj;&nbsp;" * 60)
NO_MARKUP = markupsafe.Markup("")


@dataclass(frozen=True)
class MailOptions:
    """The [digest] settings that shape a mail: papers shown whole, snippet length, subject."""

    full_entries: int = 10
    snippet_chars: int = 300
    subject: str = DEFAULT_SUBJECT


def mail_options(settings: Settings) -> MailOptions:
    """The mail options of ``settings``' [digest] section."""
    digest = settings.digest
    return MailOptions(digest.full_entries, digest.snippet_chars, digest.subject)


@dataclass(frozen=True, slots=True)
class EntryView:
    """One paper as the templates show it (every text cleaned; ``*_html`` escaped). ``html``
    and ``text`` are its own rendered fragments (digest_entry.html, digest_entry.txt)."""

    title: str
    title_html: markupsafe.Markup
    link: str | None  # the title's link: the paper's own page, if http(s)
    url: str
    abstract: str
    abstract_html: markupsafe.Markup
    authors: str
    details: str  # new version · date · categories or source · upvotes
    terms: tuple[str, ...]  # the matched terms
    # (kind, label) of the queries and topics that found it; kind "" is a reason said whole
    found_in: tuple[tuple[str, str], ...]
    sources: tuple[str, ...]  # the same in the reader's words: 'your query “llm”', 'topic “X”'
    links: tuple[tuple[str, str], ...]  # (kind, url): abstract, pdf, hf
    html: markupsafe.Markup = NO_MARKUP
    text: str = ""


def http_link(url: str) -> str | None:
    """``url`` if it is safe to make clickable (http or https), else None."""
    return url if url.lower().startswith(("https://", "http://")) else None


def entry_view(
    entry: DigestEntry,
    *,
    language: str,
    translations: gettext.NullTranslations,
    hit_open: str,
    snippet_chars: int,
) -> EntryView:
    """The view of ``entry`` for one language and highlight style (its fragments not yet set)."""
    title, title_html = highlighted_field(
        entry.title_segments or ((entry.title, False),),
        limit=TITLE_LIMIT,
        hit_open=hit_open,
        hit_close=HIT_CLOSE,
    )
    abstract, abstract_html = highlighted_field(
        entry.abstract_segments or ((entry.abstract, False),),
        limit=snippet_chars,
        hit_open=hit_open,
        hit_close=HIT_CLOSE,
        sentences=True,
    )
    url = clean_text(entry.url)
    found_in = tuple(
        (kind, _shorten(label, len(label) - LABEL_LIMIT))
        for kind, label in _first(
            [(kind, clean_text(label)) for kind, label in entry.found_in]
            or [("", clean_text(reason)) for reason in entry.reasons if reason.strip()],
            SOURCES_SHOWN,
        )
    )
    links = tuple((kind, clean_text(u)) for kind, u in entry.links if http_link(clean_text(u)))
    return EntryView(
        title=title,
        title_html=title_html,
        link=http_link(url),
        url=url,
        abstract=abstract,
        abstract_html=abstract_html,
        authors=breakable(entry.byline.authors),
        details=_details(entry, language, translations),
        terms=_first(
            [clean_text(term) for term in entry.matched_terms if term.strip()], TERMS_SHOWN
        ),
        found_in=found_in,
        sources=tuple(_source_words(kind, label, translations) for kind, label in found_in),
        links=links,
    )


def _first(items: list[Any], count: int) -> tuple[Any, ...]:
    """The first ``count`` of ``items``; a last one "…" says more were left out."""
    if len(items) <= count:
        return tuple(items)
    more: Any = "…" if isinstance(items[0], str) else ("", "…")
    return (*items[:count], more)


def _source_words(kind: str, label: str, translations: gettext.NullTranslations) -> str:
    """Why a paper is here in the reader's words: 'your query “llm”', 'topic “Agents”'."""
    if kind == "query":
        return translations.gettext("your query “%(query)s”") % {"query": label}
    if kind == "topic":
        return translations.gettext("topic “%(topic)s”") % {"topic": label}
    return label


def _details(entry: DigestEntry, language: str, translations: gettext.NullTranslations) -> str:
    """The byline's second line in ``language``: revision, date, categories or source, upvotes."""
    parts = []
    if entry.revised_version is not None:
        revision = translations.gettext("new version (v%(num)d)")
        parts.append(revision % {"num": entry.revised_version})
    if entry.day is not None:
        parts.append(medium_date(entry.day, language))
    parts.append(entry.byline.where)
    if entry.upvotes is not None:
        count = entry.upvotes
        parts.append(
            translations.ngettext("%(num)d upvote", "%(num)d upvotes", count) % {"num": count}
        )
    return " · ".join(part for part in parts if part)


def subject_line(
    digest: Digest, options: MailOptions, translations: gettext.NullTranslations
) -> str:
    """The subject: ``options.subject`` filled in ("Chain-of-Thought Hub and 4 more papers —
    Mar 14"), the first title shortened so that it never passes 78 characters."""
    count = len(digest.entries) + max(digest.more_count, 0)
    when = short_date(digest.digest_date, digest.language)
    site = clean_text(digest.site_name)
    if not digest.entries:
        subject = translations.gettext("No new papers — %(date)s") % {"date": when}
        return _shorten(subject, len(subject) - SUBJECT_LIMIT)
    if count == 1:
        pattern = translations.gettext("{first} — {date}")
    elif options.subject == DEFAULT_SUBJECT:
        pattern = translations.gettext(DEFAULT_SUBJECT)
    else:
        pattern = options.subject
    fields: dict[str, Any] = {"count": count, "more": count - 1, "date": when, "site": site}
    first = clean_text(readable_latex(digest.entries[0].title))
    subject = clean_text(pattern.format(first=first, **fields))
    if len(subject) <= SUBJECT_LIMIT:
        return subject
    room = max(len(first) - (len(subject) - SUBJECT_LIMIT), 8)
    subject = clean_text(pattern.format(first=_shorten(first, len(first) - room), **fields))
    return _shorten(subject, len(subject) - SUBJECT_LIMIT)


def _shorten(text: str, excess: int) -> str:
    """``text`` less ``excess`` characters, cut at a word with an ellipsis (as is if none)."""
    if excess <= 0:
        return text
    cut = cut_point(text, max(len(text) - excess - 1, 1), sentences=False)
    cut = min(cut, len(text) - excess - 1)
    return text[: max(cut, 1)].rstrip(" ,;:-—") + "…"


def preheader(digest: Digest, translations: gettext.NullTranslations) -> str:
    """The preview an inbox shows after the subject, about 90 characters that read well cut
    anywhere: "5 papers · Chain-of-Thought Hub, PaLM and 3 more"."""
    count = len(digest.entries) + max(digest.more_count, 0)
    head = translations.ngettext("%(num)d paper", "%(num)d papers", count) % {"num": count}
    titles = [clean_text(readable_latex(entry.title)) for entry in digest.entries[:3]]
    shown: list[str] = []
    for title in titles:
        rest = count - len(shown) - 1
        tail = translations.gettext(" and %(num)d more") % {"num": rest} if rest else ""
        line = f"{head} · {', '.join([*shown, title])}{tail}"
        if len(line) > PREHEADER_LIMIT:
            if not shown:
                room = PREHEADER_LIMIT - len(head) - 3 - len(tail)
                shown.append(_shorten(title, len(title) - max(room, 12)))
            break
        shown.append(title)
    rest = count - len(shown)
    tail = translations.gettext(" and %(num)d more") % {"num": rest} if rest and shown else ""
    return f"{head} · {', '.join(shown)}{tail}" if shown else head


def header_line(digest: Digest, translations: gettext.NullTranslations) -> str:
    """What this mail is: "12 of 340 new papers matched your 3 queries · Mar 14"."""
    matched = len(digest.entries) + max(digest.more_count, 0)
    when = short_date(digest.digest_date, digest.language)
    values = {
        "shown": matched,
        "num": max(digest.new_count, matched),
        "queries": digest.query_count,
    }
    if digest.new_count:
        found = translations.ngettext(
            "%(shown)d of %(num)d new paper matched",
            "%(shown)d of %(num)d new papers matched",
            values["num"],
        )
    else:
        found = translations.ngettext(
            "%(shown)d new paper matched", "%(shown)d new papers matched", matched
        )
    if digest.query_count:
        found += " " + translations.ngettext(
            "your query", "your %(queries)d queries", digest.query_count
        )
    return f"{found % values} · {when}"


def text_direction(language: str) -> str:
    """ "rtl" for a language written right to left, else "ltr"."""
    return "rtl" if locale_of(language).character_order == "right-to-left" else "ltr"
