"""Text for digests: untrusted text cleaned, wrapped for the plain part, and highlighted and
escaped for the HTML part; and the paper byline (authors, date, categories, upvotes) that
digests, feeds, the web page and the CLI share. Pure functions; the results of the costly ones
are cached, since one day's papers appear in many digests."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Protocol

from digestd.snippets import clean_text as clean_text  # the home of the cleaning rule

TEXT_WIDTH = 72
# A highlighted word: a styled span (Outlook for Windows does not style <mark>).
HIT_OPEN = '<span class="hit">'
HIT_CLOSE = "</span>"
_CACHE_SIZE = 16_384


@lru_cache(maxsize=_CACHE_SIZE)
def wrap_text(
    text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None
) -> str:
    """``text`` wrapped at ``width`` columns, lines indented by ``indent`` (the first by ``first``).

    Whitespace is collapsed; long words such as URLs are kept whole rather than broken. The
    result is the same as ``textwrap.fill(..., break_long_words=False, break_on_hyphens=False)``.
    """
    first = indent if first is None else first
    words = " ".join(text.split())
    if len(first) == len(indent):
        # One regular expression pass is several times faster than textwrap, which matters
        # when thousands of digests are rendered in a run.
        lines = _line_pattern(max(width - len(indent), 1)).findall(words) or [""]
        return "\n".join([first + lines[0], *(indent + line for line in lines[1:])])
    return textwrap.fill(
        words,
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


@lru_cache(maxsize=_CACHE_SIZE)
def list_item(text: str, number: int, width: int = TEXT_WIDTH) -> str:
    """``text`` wrapped as item ``number`` of a numbered list: "1.  First line" and the next
    lines indented by four spaces (by the number's width past 99)."""
    first = f"{number}.".ljust(3) + " "
    return wrap_text(text, width, " " * len(first), first)


@lru_cache(maxsize=16)
def _line_pattern(width: int) -> re.Pattern[str]:
    """Matches one wrapped line: as many words as fit in ``width``, or one longer word."""
    return re.compile(rf"(\S.{{0,{width - 1}}}(?= |$)|\S+)(?: |$)")


# -- the paper byline -------------------------------------------------------------------------

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# A byline names at most this many authors; with more, the first ones and "et al.".
BYLINE_AUTHORS = 4
BYLINE_CATEGORIES = 5  # then "+N": cross-lists rarely pass five, hostile input might
_NAME_LIMIT = 80  # characters of one author's name; a longer one is cut with an ellipsis


class PaperFacts(Protocol):
    """What a byline is made of: a stored ``Paper`` and a ``CandidatePaper`` both have it."""

    @property
    def authors(self) -> Sequence[str]:
        """The authors' names, in the paper's order."""
        ...

    @property
    def categories(self) -> Sequence[str]:
        """The paper's categories, primary first."""
        ...

    @property
    def published(self) -> date | None:
        """When the paper was published, where its source says."""
        ...

    @property
    def dump_date(self) -> date:
        """The date of the dump (or fetch) that first carried the paper."""
        ...

    @property
    def source(self) -> str:
        """The name of the source that first stored the paper ("" for a dump file)."""
        ...

    @property
    def upvotes(self) -> int | None:
        """The paper's upvotes, where its source counts them."""
        ...


@dataclass(frozen=True)
class Byline:
    """A paper's byline as every output shows it (digests, feeds, the web page, the CLI), each
    part plain, cleaned text, empty when unknown; callers escape it for their format.

    ``authors``: "Ada Lovelace, Alan Turing, Grace Hopper et al."; ``when``: the paper's own
    date ("Mar 14, 2025"), its publication date, else its dump's; ``where``: its categories,
    primary first ("cs.CL · cs.LG"), else the name of the source that stored it; ``upvotes``:
    "12 upvotes" where the source counts them (0 included); ``revision``: "new version (v2)"
    when a digest carries a paper again because a newer version of it appeared.
    """

    authors: str = ""
    when: str = ""
    where: str = ""
    upvotes: str = ""
    revision: str = ""

    @property
    def details(self) -> str:
        """The revision, date, categories (or source) and upvotes on one line, "·" between."""
        parts = (self.revision, self.when, self.where, self.upvotes)
        return " · ".join(part for part in parts if part)

    @property
    def line(self) -> str:
        """The whole byline on one line: the authors, "—", the details."""
        return " — ".join(part for part in (self.authors, self.details) if part)

    def __bool__(self) -> bool:
        return bool(self.authors or self.when or self.where or self.upvotes)


NO_BYLINE = Byline()


def paper_byline(paper: PaperFacts) -> Byline:
    """The byline of ``paper`` (see ``Byline``); a paper from a text dump has only its date."""
    return Byline(
        authors=short_authors(paper.authors),
        when=long_date(paper_date(paper)),
        where=category_line(paper.categories) or clean_text(paper.source),
        upvotes=upvote_count(paper.upvotes),
    )


def paper_date(paper: PaperFacts) -> date:
    """The paper's own date: when it was published, else the date of the dump that carried it."""
    return paper.published or paper.dump_date


def long_date(day: date) -> str:
    """``day`` as "Mar 14, 2025"."""
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def author_names(authors: Sequence[str]) -> list[str]:
    """The authors' names cleaned (one line each, long ones cut), blank ones left out."""
    names = []
    for author in authors:
        name = clean_text(author)
        if len(name) > _NAME_LIMIT:
            name = name[: _NAME_LIMIT - 1].rstrip() + "…"
        if name:
            names.append(name)
    return names


def short_authors(authors: Sequence[str], limit: int = BYLINE_AUTHORS) -> str:
    """Up to ``limit`` authors' names, then "et al." when there are more; "" for none."""
    names = author_names(authors)
    shown = ", ".join(names[:limit])
    return f"{shown} et al." if len(names) > limit else shown


def category_line(categories: Sequence[str], limit: int = BYLINE_CATEGORIES) -> str:
    """The categories, primary first, as "cs.CL · cs.LG" (past ``limit``, "+N"); "" for none."""
    terms = list(dict.fromkeys(term for term in map(clean_text, categories) if term))
    line = " · ".join(terms[:limit])
    return f"{line} +{len(terms) - limit}" if len(terms) > limit else line


def upvote_count(upvotes: int | None) -> str:
    """ "12 upvotes", "1 upvote", "0 upvotes"; "" where the source does not count them."""
    if upvotes is None:
        return ""
    return f"{upvotes} upvote" if upvotes == 1 else f"{upvotes} upvotes"
