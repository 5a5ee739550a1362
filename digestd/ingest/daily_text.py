"""Parser for the daily-papers text dump: header lines, a date line, then title / abstract blocks.

    new                                   <- header (site navigation), ignored
    Get trending papers in your email inbox!
    Mar 14                                <- date line, year taken from a reference date
    Title of the first paper
                                          <- blank line
    Abstract paragraph of the first paper
    ...

A title with no abstract is kept with an empty abstract and a warning. An abstract that spans
several paragraphs is kept whole. Pure: text in, ParsedDump out.
"""

from __future__ import annotations

import re
from datetime import date

from digestd.errors import DumpError
from digestd.ingest.papers import ParsedDump, ParsedPaper, find_arxiv_id

MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}

MONTH_DAY = re.compile(r"^(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:,?\s+(?P<year>\d{4}))?$")
ISO_DATE = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})$")
HEADER_LIMIT = 40  # a date line further down than this is not a header's date line
TITLE_MAX_CHARS = 300


def _date_from_line(line: str, reference: date) -> date | None:
    """The date a header line names, or None if it is not a date line."""
    iso = ISO_DATE.match(line)
    if iso:
        try:
            return date(int(iso["year"]), int(iso["month"]), int(iso["day"]))
        except ValueError:
            return None
    md = MONTH_DAY.match(line)
    if not md or md["month"].lower() not in MONTHS:
        return None
    month, day = MONTHS[md["month"].lower()], int(md["day"])
    try:
        if md["year"]:
            return date(int(md["year"]), month, day)
        # No year: the most recent such date that is not after the reference day.
        candidate = date(reference.year, month, day)
        return candidate if candidate <= reference else date(reference.year - 1, month, day)
    except ValueError:
        return None


def _find_date_line(lines: list[str], reference: date) -> tuple[int, date]:
    """The index and date of the date line that ends the header."""
    for index, line in enumerate(lines[:HEADER_LIMIT]):
        dump_date = _date_from_line(line, reference) if line else None
        if dump_date is not None:
            return index, dump_date
    raise DumpError(f"no date line (like 'Mar 14') in the first {HEADER_LIMIT} lines")


def _looks_like_title(paragraph: str) -> bool:
    """A title is one short line that does not end like a sentence."""
    return (
        "\n" not in paragraph and len(paragraph) <= TITLE_MAX_CHARS and not paragraph.endswith(".")
    )


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated paragraphs; wrapped lines inside one are joined with a space."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current) if len(current) > 1 else current[0])
            current = []
    return paragraphs


def _clean_lines(text: str) -> list[str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [line.strip() for line in text.split("\n")]


def parse_daily_text(text: str, *, reference: date) -> ParsedDump:
    """The papers of one daily text dump; ``reference`` gives the year of a year-less date line."""
    lines = _clean_lines(text)
    index, dump_date = _find_date_line(lines, reference)

    papers: list[ParsedPaper] = []
    warnings: list[str] = []
    title: str | None = None
    abstract: list[str] = []

    def close_paper() -> None:
        if title is None:
            return
        if not abstract:
            warnings.append(f"paper {len(papers) + 1} {title[:60]!r} has no abstract")
        body = "\n\n".join(abstract)
        papers.append(ParsedPaper(title=title, abstract=body, arxiv_id=find_arxiv_id(title, body)))

    for paragraph in _paragraphs(lines[index + 1 :]):
        if title is None:
            if not _looks_like_title(paragraph):
                raise DumpError(
                    f"the first paragraph after the date line is not a title: {paragraph[:60]!r}"
                )
            title = paragraph
        elif _looks_like_title(paragraph):
            close_paper()
            title, abstract = paragraph, []
        else:
            abstract.append(paragraph)
    close_paper()
    if not papers:
        raise DumpError("no papers after the date line")
    return ParsedDump(dump_date=dump_date, papers=tuple(papers), warnings=tuple(warnings))
