"""Parser for the daily-papers text dump: header lines, a date line, then title / abstract blocks.

    new                                   <- header (site navigation), ignored
    Get trending papers in your email inbox!
    Mar 14                                <- date line, year taken from a reference date
    Title of the first paper
                                          <- blank line
    Abstract paragraph of the first paper
    ...

Titles are found for the whole dump at once: each paragraph after the date line is labelled TITLE,
ABSTRACT or MORE (a further abstract paragraph), and the labelling of least total cost wins
(Viterbi), so one odd paragraph (a title ending in ".", a one-line abstract) cannot derail its
neighbours. A title with no abstract is kept with an empty abstract and a warning; an abstract
spanning several paragraphs is kept whole. Pure: text in, ParsedDump out.
"""

from __future__ import annotations

import math
import re
from datetime import date
from enum import IntEnum
from typing import NamedTuple

from digestd.errors import DumpError
from digestd.ingest.papers import ParsedDump, ParsedPaper, find_arxiv_id

_MONTH_NAMES = (
    "jan january|feb february|mar march|apr april|may|jun june|jul july|aug august"
    "|sep sept september|oct october|nov november|dec december"
)
MONTHS = {
    name: number
    for number, names in enumerate(_MONTH_NAMES.split("|"), start=1)
    for name in names.split()
}
MONTH_DAY = re.compile(r"^(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:,?\s+(?P<year>\d{4}))?$")
ISO_DATE = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})$")
HEADER_LIMIT = 40  # a date line further down than this is not a header's date line
TITLE_MAX_CHARS = 500  # longer is never a title, whatever the labelling would prefer
# A dump is untrusted input and every later stage re-reads abstracts: bound what one paper holds.
ABSTRACT_MAX_CHARS = 20_000

SENTENCE_BREAK = re.compile(r"[.!?]\s+\S")
PERIOD_BREAK = re.compile(r"\.\s+\S")  # "?" and "!" breaks are common in titles, "." ones are not
TERMINAL = re.compile(r"[.!?][\"')\]]*$")

# Costs. Plain alternation of ordinary titles and abstracts costs 0; any departure from it must be
# paid for by features pointing the other way. Tuned on the cases in tests/test_ingest.py, where
# the right labelling wins by at least 3.7.
MISSING_ABSTRACT = 6.0  # TITLE -> TITLE, or a TITLE ending the dump
EXTRA_PARAGRAPH = 4.0  # ABSTRACT -> MORE: abstracts are usually one paragraph
FURTHER_PARAGRAPH = 2.0  # MORE -> MORE: once an abstract spans paragraphs, more are likelier
TITLE_PERIOD_BREAK = 5.0  # per ". " inside a would-be title
TITLE_FINAL_PERIOD = 5.0  # "Attention Is All You Need." happens, but rarely
TITLE_EXTRA_LINE = 2.0  # per wrapped line of a would-be title
TITLE_LONG_FROM, TITLE_LONG_SCALE = 200, 25  # +1 per 25 characters over 200
ABSTRACT_NO_BREAK = 1.0  # a single sentence
ABSTRACT_UNTERMINATED = 5.0  # a single sentence that does not even end: reads like a title
ABSTRACT_SHORT_FROM, ABSTRACT_SHORT_SCALE = 200, 100  # +1 per 100 characters under 200


class Label(IntEnum):
    """What a paragraph after the date line is."""

    TITLE = 0
    ABSTRACT = 1  # the first abstract paragraph; follows a TITLE
    MORE = 2  # a further abstract paragraph; follows ABSTRACT or MORE


class Paragraph(NamedTuple):
    """A blank-line separated paragraph, its wrapped lines joined with spaces."""

    text: str
    lines: int


_TRANSITION: dict[tuple[Label, Label], float] = {
    (Label.TITLE, Label.TITLE): MISSING_ABSTRACT,
    (Label.TITLE, Label.ABSTRACT): 0.0,
    (Label.ABSTRACT, Label.TITLE): 0.0,
    (Label.ABSTRACT, Label.MORE): EXTRA_PARAGRAPH,
    (Label.MORE, Label.TITLE): 0.0,
    (Label.MORE, Label.MORE): FURTHER_PARAGRAPH,
}  # pairs not listed are impossible; the first paragraph must be a TITLE
_END = {Label.TITLE: MISSING_ABSTRACT, Label.ABSTRACT: 0.0, Label.MORE: 0.0}
# For each label (by index), the labels that may precede it, in label order, with the cost.
_PREDECESSORS = tuple(
    tuple((int(p), _TRANSITION[p, label]) for p in Label if (p, label) in _TRANSITION)
    for label in Label
)


def _title_cost(paragraph: Paragraph) -> float:
    text = paragraph.text
    if len(text) > TITLE_MAX_CHARS:
        return math.inf
    return (
        TITLE_PERIOD_BREAK * len(PERIOD_BREAK.findall(text))
        + TITLE_FINAL_PERIOD * text.endswith(".")
        + TITLE_EXTRA_LINE * (paragraph.lines - 1)
        + max(0, len(text) - TITLE_LONG_FROM) / TITLE_LONG_SCALE
    )


def _abstract_cost(paragraph: Paragraph) -> float:
    text = paragraph.text
    cost = max(0, ABSTRACT_SHORT_FROM - len(text)) / ABSTRACT_SHORT_SCALE
    if not SENTENCE_BREAK.search(text):
        cost += ABSTRACT_NO_BREAK if TERMINAL.search(text) else ABSTRACT_UNTERMINATED
    return cost


def best_labels(paragraphs: list[Paragraph]) -> tuple[list[Label], float]:
    """The cheapest labelling of ``paragraphs`` (at least one) and its cost; the cost is inf
    when the first paragraph cannot be a title."""
    # Plain lists indexed by label: this loop runs once per paragraph of every dump. Among
    # equally cheap predecessors the first in label order wins.
    cost = [_title_cost(paragraphs[0]), math.inf, math.inf]
    back: list[list[int]] = []  # back[i][label]: the best label before it
    for paragraph in paragraphs[1:]:
        abstract = _abstract_cost(paragraph)
        emission = (_title_cost(paragraph), abstract, abstract)
        step: list[float] = []
        pointers: list[int] = []
        for label, predecessors in enumerate(_PREDECESSORS):
            best, best_cost = -1, math.inf
            for previous, transition in predecessors:
                total = cost[previous] + transition
                if best < 0 or total < best_cost:
                    best, best_cost = previous, total
            step.append(best_cost + emission[label])
            pointers.append(best)
        cost = step
        back.append(pointers)
    last = min(Label, key=lambda label: cost[label] + _END[label])
    labels = [last]
    for pointers in reversed(back):
        labels.append(Label(pointers[labels[-1]]))
    return labels[::-1], cost[last] + _END[last]


def _date(line: str, reference: date) -> date | None:
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
    if md["year"]:
        try:
            return date(int(md["year"]), month, day)
        except ValueError:
            return None
    # No year: the most recent such date that is not after the reference day (for Feb 29, the
    # most recent leap year's).
    for year in range(reference.year, reference.year - 8, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= reference:
            return candidate
    return None


def _find_date_line(lines: list[str], reference: date) -> tuple[int, date, list[str]]:
    """The index and date of the date line that ends the header, and warnings about it.

    Date lines one after another (blank lines between) happen when a page lists several days;
    the last one is the day whose papers follow."""
    found = ((i, d) for i, line in enumerate(lines[:HEADER_LIMIT]) if (d := _date(line, reference)))
    index, dump_date = next(found, (-1, None))
    if dump_date is None:
        raise DumpError(f"no date line (like 'Mar 14') in the first {HEADER_LIMIT} lines")
    seen = [lines[index]]
    for following in range(index + 1, len(lines)):
        if lines[following]:
            if (later := _date(lines[following], reference)) is None:
                break
            index, dump_date = following, later
            seen.append(lines[following])
    warnings = [f"several date lines {seen}; using the last"] if len(seen) > 1 else []
    return index, dump_date, warnings


def _paragraphs(lines: list[str]) -> list[Paragraph]:
    """Blank-line separated paragraphs; wrapped lines inside one are joined with a space."""
    paragraphs: list[Paragraph] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(Paragraph(" ".join(current), len(current)))
            current = []
    return paragraphs


def _clean_lines(text: str) -> list[str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [line.strip() for line in text.split("\n")]


def _cut_at_word(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last whitespace before the limit."""
    head = text[: limit + 1]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return (head[:cut] if cut > 0 else text[:limit]).rstrip()


def parse_daily_text(text: str, *, reference: date) -> ParsedDump:
    """The papers of one daily text dump; ``reference`` gives the year of a year-less date line."""
    lines = _clean_lines(text)
    index, dump_date, warnings = _find_date_line(lines, reference)
    paragraphs = _paragraphs(lines[index + 1 :])
    if not paragraphs:
        raise DumpError("no papers after the date line")
    labels, cost = best_labels(paragraphs)
    if math.isinf(cost):
        raise DumpError(
            f"the first paragraph after the date line is not a title: {paragraphs[0].text[:60]!r}"
        )
    blocks: list[tuple[str, list[str]]] = []
    for paragraph, label in zip(paragraphs, labels, strict=True):
        if label is Label.TITLE:
            blocks.append((paragraph.text, []))
        else:
            blocks[-1][1].append(paragraph.text)
    papers: list[ParsedPaper] = []
    for number, (title, abstract) in enumerate(blocks, start=1):
        body = "\n\n".join(abstract)
        if not body:
            warnings.append(f"paper {number} {title[:60]!r} has no abstract")
        elif len(body) > ABSTRACT_MAX_CHARS:
            warnings.append(
                f"paper {number} {title[:60]!r}: abstract of {len(body)} characters cut to"
                f" {ABSTRACT_MAX_CHARS}"
            )
            body = _cut_at_word(body, ABSTRACT_MAX_CHARS)
        papers.append(ParsedPaper(title=title, abstract=body, arxiv_id=find_arxiv_id(title, body)))
    return ParsedDump(dump_date=dump_date, papers=tuple(papers), warnings=tuple(warnings))
