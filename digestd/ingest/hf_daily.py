"""Parser for Hugging Face's daily papers JSON (huggingface.co/api/daily_papers).

The answer is a list of items ``{"paper": {"id", "title", "summary", "authors": [{"name"}],
"publishedAt", "submittedOnDailyAt", "upvotes", ...}, "title", "summary", ...}``; a list of bare
paper objects (no "paper" wrapper) is read the same way. The paper's id is its arXiv id; the
dump date is the day most items were put on the daily page (``submittedOnDailyAt``). ``[]`` is
an empty day; ``{"error": ...}`` or any other shape is SourceFailure. Pure: JSON in, ParsedDump
out.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from typing import Any

from digestd.errors import DumpError, SourceFailure
from digestd.ingest.papers import (
    ParsedDump,
    ParsedPaper,
    clip_abstract,
    collapse_whitespace,
    iso_date,
    split_arxiv_id,
)

FORMAT = "hf-json"
EXPECTED = "a JSON array of daily papers ({'paper': {'id', 'title', 'summary', ...}})"


def load_json(text: str) -> Any:
    """The JSON value ``text`` holds; DumpError (one line, with the position) when it is not
    JSON or nests too deeply to read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DumpError(
            f"JSON is not well-formed: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise DumpError("JSON nests too deeply to read") from None


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type (object, array, string, number, true/false, null)."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", int: "a number"}
    return names.get(type(value), "a number")


def parse_hf_daily(source: str | bytes, *, reference: date) -> ParsedDump:
    """The papers of one Hugging Face daily papers answer and its day (else ``reference``).
    DumpError when it is not JSON, SourceFailure when it is an error or of another shape."""
    data = load_json(source.decode("utf-8-sig") if isinstance(source, bytes) else source)
    if isinstance(data, dict):
        if "error" in data:
            raise SourceFailure(f"Hugging Face error: {collapse_whitespace(str(data['error']))}")
        keys = ", ".join(sorted(map(str, data))[:5])
        raise SourceFailure(f"expected {EXPECTED}, got an object with keys {keys}")
    if not isinstance(data, list):
        raise SourceFailure(f"expected {EXPECTED}, got {json_type(data)}")
    warnings: list[str] = []
    papers: list[ParsedPaper] = []
    days: Counter[date] = Counter()
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise SourceFailure(f"item {number} is {json_type(item)}, expected an object")
        paper = item.get("paper", item)
        if not isinstance(paper, dict):
            raise SourceFailure(f"item {number}: 'paper' is {json_type(paper)}, expected an object")
        if day := _day(paper.get("submittedOnDailyAt") or item.get("submittedOnDailyAt")):
            days[day] += 1
        parsed = _paper(paper, item, number, warnings)
        if parsed is not None:
            papers.append(parsed)
    # The most common day; among equally common days the latest.
    dump_date = max(days, key=lambda d: (days[d], d)) if days else reference
    return ParsedDump(dump_date, tuple(papers), tuple(warnings), FORMAT)


def _day(value: object) -> date | None:
    return iso_date(value) if isinstance(value, str) else None


def _text(value: object) -> str:
    return collapse_whitespace(value) if isinstance(value, str) else ""


def _paper(
    paper: dict[str, Any], item: dict[str, Any], number: int, warnings: list[str]
) -> ParsedPaper | None:
    """One item as a paper, or None (with a warning) when it has no title."""
    title = _text(paper.get("title")) or _text(item.get("title"))
    if not title:
        warnings.append(f"item {number}: 'title' is missing; skipped")
        return None
    abstract = _text(paper.get("summary")) or _text(item.get("summary"))
    if len(clipped := clip_abstract(abstract)) < len(abstract):
        warnings.append(f"item {number}: summary of {len(abstract)} characters cut short")
        abstract = clipped
    paper_id = paper.get("id")
    split = split_arxiv_id(paper_id) if isinstance(paper_id, str) else None
    if split is None:
        warnings.append(f"item {number} {title[:60]!r}: 'id' {paper_id!r:.40} is not an arXiv id")
    arxiv_id, version = split or (None, None)
    authors = paper.get("authors")
    upvotes = paper.get("upvotes")
    return ParsedPaper(
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        version=version,
        authors=tuple(
            name
            for author in (authors if isinstance(authors, list) else [])
            if (name := _text(author.get("name") if isinstance(author, dict) else author))
        ),
        published=_day(paper.get("publishedAt")),
        abs_url=f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else "",
        hf_url=f"https://huggingface.co/papers/{arxiv_id}" if arxiv_id else "",
        upvotes=upvotes if isinstance(upvotes, int) and not isinstance(upvotes, bool) else None,
    )
