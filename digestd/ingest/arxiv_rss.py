"""Parser for arXiv's RSS 2.0 listings (rss.arxiv.org/rss/<category>, the 2024 format).

Each ``<item>`` is one announcement: its description starts
``arXiv:2604.21935v1 Announce Type: new`` then ``Abstract: ...``; the guid is
``oai:arXiv.org:2604.21935v1``; ``arxiv:announce_type`` is new, cross, replace or replace-cross;
``dc:creator`` lists the authors comma-separated. RSS does not mark a primary category, so the
``<category>`` elements are kept in feed order. The dump date is the channel's ``pubDate`` day as
written (not shifted to UTC), else ``lastBuildDate``'s, else the reference day. A channel
titled "Feed error for query" is SourceFailure; a channel without items is an empty day.

Links follow the arXiv API parser: ``https://arxiv.org/abs/<id>`` and
``https://arxiv.org/pdf/<id>v<n>``. ``arxiv:DOI`` and ``arxiv:journal_reference``, which some
items carry, are read when present. Pure: XML in, ParsedDump out.
"""

from __future__ import annotations

import re
from datetime import date
from email.utils import parsedate_to_datetime
from xml.etree.ElementTree import Element

from digestd.errors import DumpError, SourceFailure
from digestd.ingest.papers import (
    ParsedDump,
    ParsedPaper,
    clip_abstract,
    split_arxiv_id,
    split_authors,
    unique,
)
from digestd.ingest.xml_input import (
    ARXIV,
    DC,
    child_text,
    element_text,
    local_name,
    parse_xml,
)

FORMAT = "arxiv-rss"
ERROR_TITLE = "Feed error for query"
# "arXiv:2604.21935v1 Announce Type: new \nAbstract: ..." (whitespace already collapsed)
_DESCRIPTION = re.compile(
    r"^arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?(?P<abstract>.*)$",
    re.DOTALL,
)
# The pre-2024 title suffix "Title. (arXiv:2404.01234v1 [cs.AI])", should such a feed turn up.
_TITLE_SUFFIX = re.compile(r"\s*\(arXiv:[^()]*\)$")
FIRST_ANNOUNCEMENTS = frozenset({"new", "cross"})


def parse_arxiv_rss(source: str | bytes, *, reference: date) -> ParsedDump:
    """The papers of one arXiv RSS listing and its date (see the module docstring). DumpError
    when it is not such a listing, SourceFailure when it is arXiv's "Feed error for query"."""
    root = parse_xml(source)
    if local_name(root) != "rss":
        raise DumpError(f"not an RSS feed: the root element is <{local_name(root)}>")
    channel = root.find("channel")
    if channel is None:
        raise DumpError("RSS feed has no <channel>")
    if child_text(channel, "title") == ERROR_TITLE:
        reason = child_text(channel, "description") or "no reason given"
        raise SourceFailure(f"arXiv RSS error: {reason}")
    dump_date = (
        _rfc822_date(child_text(channel, "pubDate"))
        or _rfc822_date(child_text(channel, "lastBuildDate"))
        or reference
    )
    warnings: list[str] = []
    papers = []
    for number, item in enumerate(channel.findall("item"), start=1):
        paper = _paper(item, number, warnings)
        if paper is not None:
            papers.append(paper)
    return ParsedDump(dump_date, tuple(papers), tuple(warnings), FORMAT)


def _rfc822_date(value: str) -> date | None:
    """The day an RSS date (``Mon, 27 Apr 2026 00:00:00 -0400``) names in its own zone."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).date()
    except (TypeError, ValueError, IndexError):
        return None


def _paper(item: Element, number: int, warnings: list[str]) -> ParsedPaper | None:
    """One item as a paper, or None (with a warning) when it has no title."""
    title = _TITLE_SUFFIX.sub("", child_text(item, "title"))
    if not title:
        warnings.append(f"item {number}: <title> is missing; skipped")
        return None
    description = child_text(item, "description")
    found = _DESCRIPTION.match(description)
    abstract = found["abstract"] if found else description
    if len(clipped := clip_abstract(abstract)) < len(abstract):
        warnings.append(f"item {number}: abstract of {len(abstract)} characters cut short")
        abstract = clipped
    link = child_text(item, "link")
    split = (
        split_arxiv_id(child_text(item, "guid"))
        or (split_arxiv_id(found["id"]) if found else None)
        or split_arxiv_id(link)
    )
    if split is None:
        warnings.append(f"item {number} {title[:60]!r}: no arXiv id in <guid> or <description>")
    arxiv_id, version = split or (None, None)
    announce_type = child_text(item, f"{ARXIV}announce_type") or (found["type"] if found else "")
    day = _rfc822_date(child_text(item, "pubDate"))
    creators = [element_text(creator) for creator in item.findall(f"{DC}creator")]
    return ParsedPaper(
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        version=version,
        authors=tuple(name for names in creators for name in split_authors(names)),
        categories=unique([element_text(c) for c in item.findall("category")]),
        published=day if announce_type in FIRST_ANNOUNCEMENTS else None,
        updated=day,
        doi=child_text(item, f"{ARXIV}DOI") or child_text(item, f"{ARXIV}doi") or None,
        journal_ref=child_text(item, f"{ARXIV}journal_reference"),
        abs_url=f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else link,
        pdf_url=(
            f"https://arxiv.org/pdf/{arxiv_id}" + (f"v{version}" if version else "")
            if arxiv_id
            else ""
        ),
        announce_type=announce_type,
    )
