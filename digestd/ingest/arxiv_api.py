"""Parser for arXiv API responses (export.arxiv.org/api/query): an Atom feed, one entry a paper.

Both layouts arXiv has served are read: the 2025+ one (namespaces declared once on the feed,
https links) and the legacy one (namespaces declared on each element, http and dx.doi.org links).
The feed's ``<updated>`` gives the dump date. An error answer is a feed with one entry titled
"Error" (its id under http://arxiv.org/api/errors): SourceFailure with its summary. No entries is
an empty day. Pure: XML in, ParsedDump out.

Links: ``abs_url`` is normalised to ``https://arxiv.org/abs/<id>`` (version-less, the page that
always shows the newest version, as arXiv RSS gives it) and ``pdf_url`` to
``https://arxiv.org/pdf/<id>v<n>`` (this version's PDF); for an entry whose id is not an arXiv
id the feed's links are kept as given.
"""

from __future__ import annotations

import re
from datetime import date
from xml.etree.ElementTree import Element

from digestd.errors import DumpError, SourceFailure
from digestd.ingest.papers import (
    ParsedDump,
    ParsedPaper,
    clip_abstract,
    iso_date,
    split_arxiv_id,
    unique,
)
from digestd.ingest.xml_input import ARXIV, ATOM, OPENSEARCH, child_text, local_name, parse_xml

FORMAT = "arxiv-api"
_DOI_URL = re.compile(r"^https?://(?:dx\.)?doi\.org/", re.IGNORECASE)


def parse_arxiv_api(source: str | bytes, *, reference: date) -> ParsedDump:
    """The papers of one arXiv API Atom response; the dump date is the feed's ``<updated>`` day,
    else ``reference``. DumpError when it is not such a feed, SourceFailure when it is arXiv's
    error answer."""
    root = parse_xml(source)
    if root.tag != f"{ATOM}feed":
        raise DumpError(f"not an arXiv API response: the root element is <{local_name(root)}>")
    entries = root.findall(f"{ATOM}entry")
    if len(entries) == 1 and _is_error(entries[0]):
        summary = child_text(entries[0], f"{ATOM}summary") or "no reason given"
        raise SourceFailure(f"arXiv API error: {summary}")
    warnings: list[str] = []
    dump_date = iso_date(child_text(root, f"{ATOM}updated")) or reference
    if not entries:
        total = child_text(root, f"{OPENSEARCH}totalResults")
        if total.isdigit() and int(total) > 0:
            warnings.append(f"the feed reports {total} results but holds no entries")
        return ParsedDump(dump_date, (), tuple(warnings), FORMAT)
    papers = []
    for number, entry in enumerate(entries, start=1):
        paper = _paper(entry, number, warnings)
        if paper is not None:
            papers.append(paper)
    return ParsedDump(dump_date, tuple(papers), tuple(warnings), FORMAT)


def _is_error(entry: Element) -> bool:
    entry_id = child_text(entry, f"{ATOM}id")
    return "/api/errors" in entry_id or (
        child_text(entry, f"{ATOM}title") == "Error" and split_arxiv_id(entry_id) is None
    )


def _paper(entry: Element, number: int, warnings: list[str]) -> ParsedPaper | None:
    """One entry as a paper, or None (with a warning) when it has no title."""
    entry_id = child_text(entry, f"{ATOM}id")
    title = child_text(entry, f"{ATOM}title")
    if not title:
        warnings.append(f"entry {number} ({entry_id or 'no <id>'}): <title> is missing; skipped")
        return None
    abstract = child_text(entry, f"{ATOM}summary")
    if len(clipped := clip_abstract(abstract)) < len(abstract):
        warnings.append(f"entry {number}: <summary> of {len(abstract)} characters cut short")
        abstract = clipped
    split = split_arxiv_id(entry_id)
    if split is None:
        warnings.append(f"entry {number}: <id> {entry_id[:80]!r} is not an arXiv id")
    arxiv_id, version = split or (None, None)
    links = {
        (link.get("title") or link.get("rel") or ""): link.get("href", "")
        for link in reversed(entry.findall(f"{ATOM}link"))
    }
    primary = entry.find(f"{ARXIV}primary_category")
    categories = [primary.get("term", "")] if primary is not None else []
    categories += [c.get("term", "") for c in entry.findall(f"{ATOM}category")]
    doi = child_text(entry, f"{ARXIV}doi") or _DOI_URL.sub("", links.get("doi", ""))
    return ParsedPaper(
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        version=version,
        doi=doi or None,
        authors=tuple(
            name
            for author in entry.findall(f"{ATOM}author")
            if (name := child_text(author, f"{ATOM}name"))
        ),
        categories=unique([c.strip() for c in categories]),
        published=iso_date(child_text(entry, f"{ATOM}published")),
        updated=iso_date(child_text(entry, f"{ATOM}updated")),
        journal_ref=child_text(entry, f"{ARXIV}journal_ref"),
        comment=child_text(entry, f"{ARXIV}comment"),
        abs_url=f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else links.get("alternate", ""),
        pdf_url=_pdf_url(arxiv_id, version) if arxiv_id else links.get("pdf", ""),
    )


def _pdf_url(arxiv_id: str, version: int | None) -> str:
    return f"https://arxiv.org/pdf/{arxiv_id}" + (f"v{version}" if version else "")
