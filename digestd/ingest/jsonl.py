"""Parser for JSON Lines dumps: one JSON object, one paper, a line; blank lines are ignored.

    {"id": "2606.01234v1", "title": "...", "abstract": "...", "authors": ["A. Author"],
     "date": "2026-06-12", "url": "https://...", "categories": ["cs.LG", "cs.CL"]}

``id``, ``title`` and ``abstract`` are required (the abstract may be empty). An ``id`` that is an
arXiv id (``2606.01234``, ``2606.01234v2``, ``arXiv:hep-th/9901001``, an arXiv abs URL) gives the
arXiv id and version; a DOI (``10.1234/abc``, ``doi:...``, a doi.org URL) the DOI; any other
``id`` is only the file's own name for the paper, and the paper is known by its title. Optional:
``authors`` (a list of names, or one string of comma-separated names), ``date`` (YYYY-MM-DD or an
ISO timestamp: the paper's published day), ``url`` (its Hugging Face page when it is one, else its
own page), ``categories`` (a list, or one string separated by spaces or commas, primary first).
Other keys are ignored. A line that breaks these rules is a DumpError naming the line and the
field; the dump date is the newest paper date, else the reference day. Pure: text in, ParsedDump
out.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from digestd.errors import DumpError
from digestd.ingest.hf_daily import json_type
from digestd.ingest.papers import (
    ParsedDump,
    ParsedPaper,
    clip_abstract,
    collapse_whitespace,
    iso_date,
    split_arxiv_id,
    split_authors,
    unique,
)

FORMAT = "jsonl"
DOI = re.compile(r"(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(?P<doi>10\.\d{4,9}/\S+)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,]+")


def parse_jsonl(source: str | bytes, *, reference: date) -> ParsedDump:
    """The papers of one JSON Lines dump and its date (see the module docstring); DumpError
    ("line 3: field 'title' is missing") for the first line that is not a paper."""
    text = source.decode("utf-8-sig") if isinstance(source, bytes) else source
    papers: list[ParsedPaper] = []
    warnings: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            papers.append(_paper(_object(line, number), number, warnings))
    days = [d for p in papers if (d := p.published)]
    return ParsedDump(max(days, default=reference), tuple(papers), tuple(warnings), FORMAT)


def _object(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DumpError(f"line {number}: not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise DumpError(f"line {number}: JSON nests too deeply to read") from None
    if not isinstance(value, dict):
        raise DumpError(f"line {number}: expected a JSON object, got {json_type(value)}")
    return value


def _string(record: dict[str, Any], field: str, number: int, *, required: bool) -> str:
    """The field's whitespace-collapsed string value; "" when absent and not required."""
    if field not in record or record[field] is None:
        if required:
            raise DumpError(f"line {number}: field {field!r} is missing")
        return ""
    value = record[field]
    if not isinstance(value, str):
        raise DumpError(f"line {number}: field {field!r} must be a string, got {json_type(value)}")
    return collapse_whitespace(value)


def _names(record: dict[str, Any], field: str, number: int) -> list[str]:
    """A list-of-strings field, or one string to be split by the caller ([] when absent)."""
    value = record.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [collapse_whitespace(v) for v in value]
    raise DumpError(
        f"line {number}: field {field!r} must be a list of strings or a string,"
        f" got {json_type(value)}"
    )


def _paper(record: dict[str, Any], number: int, warnings: list[str]) -> ParsedPaper:
    paper_id = _string(record, "id", number, required=True)
    title = _string(record, "title", number, required=True)
    if not title:
        raise DumpError(f"line {number}: field 'title' is empty")
    abstract = _string(record, "abstract", number, required=True)
    if len(clipped := clip_abstract(abstract)) < len(abstract):
        warnings.append(f"line {number}: abstract of {len(abstract)} characters cut short")
        abstract = clipped
    raw_date = _string(record, "date", number, required=False)
    day = iso_date(raw_date) if raw_date else None
    if raw_date and day is None:
        raise DumpError(f"line {number}: field 'date' {raw_date[:40]!r} is not YYYY-MM-DD")
    authors = _names(record, "authors", number)
    if isinstance(record.get("authors"), str):
        authors = list(split_authors(authors[0]))
    categories = _names(record, "categories", number)
    if isinstance(record.get("categories"), str):
        categories = _SEPARATORS.split(categories[0])
    url = _string(record, "url", number, required=False)
    split = split_arxiv_id(paper_id)
    arxiv_id, version = split or (None, None)
    doi = None if split else (found["doi"] if (found := DOI.fullmatch(paper_id)) else None)
    return ParsedPaper(
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        version=version,
        doi=doi,
        authors=tuple(a for a in authors if a),
        categories=unique([c.strip() for c in categories]),
        published=day,
        abs_url="" if "huggingface.co/papers/" in url else url,
        hf_url=url if "huggingface.co/papers/" in url else "",
    )
