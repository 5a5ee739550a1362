"""How a paper a source states joins the stored paper it is: which stored row it is, and what
changes. Pure: rows in, changes out; store/papers.py reads and writes.

Identity: the version-less arXiv id, else the DOI, else the folded title. A paper stored by its
title or DOI (a text dump has neither id) takes the arXiv id of the first source that names it,
so the same paper through a dump, Hugging Face and the arXiv API is one row. A newer arXiv
version replaces the stored text and is recorded; it is a revision, not a new paper.

Upvotes are the last fetched count, refreshed while the paper is recent (its own date within
``UPVOTES_REFRESH_DAYS`` of the fetch; an older paper without a count still takes its first
one, as an empty link is filled in); a refresh alone is invisible to readers: the paper is
neither new nor revised, and its feed entry keeps its updated instant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from digestd.ingest import ParsedPaper

# The stored columns a merge looks at (the title and abstract are only ever replaced).
MERGE_COLUMNS = (
    "id",
    "uid",
    "title_key",
    "arxiv_id",
    "doi",
    "version",
    "authors",
    "categories",
    "published",
    "journal_ref",
    "comment",
    "abs_url",
    "pdf_url",
    "hf_url",
    "upvotes",
    "dump_date",
)
# Hugging Face counts votes on a paper for about its first two weeks on Daily Papers; an older
# paper's count is what it ended at, and a stray late count must not reorder old days.
UPVOTES_REFRESH_DAYS = 14
# Text fields a source fills in when the stored paper has none yet.
_FILLED = ("journal_ref", "comment", "abs_url", "pdf_url", "hf_url")


@dataclass(frozen=True)
class StoredRow:
    """The merge-relevant columns of one stored paper."""

    id: int
    uid: str
    title_key: str
    arxiv_id: str | None
    doi: str | None
    version: int | None
    authors: Sequence[str]
    categories: Sequence[str]
    published: date | None
    journal_ref: str
    comment: str
    abs_url: str
    pdf_url: str
    hf_url: str
    upvotes: int | None
    dump_date: date | None = None  # the paper's own date

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StoredRow:
        """A StoredRow from a result row's mapping of MERGE_COLUMNS."""
        values = dict(row)
        values["authors"] = tuple(values["authors"] or ())
        values["categories"] = tuple(values["categories"] or ())
        return cls(**values)


@dataclass
class PaperChange:
    """What storing one paper changes in its stored row."""

    paper_id: int
    values: dict[str, Any] = field(default_factory=dict)
    new_version: int | None = None  # a version to record in paper_version
    revised: bool = False  # a newer version replaced the text

    @property
    def visible(self) -> bool:
        """Whether readers see the change (anything but the upvote count): the paper gets a
        new updated instant, so feed entries say it changed."""
        return any(name != "upvotes" for name in self.values)


def brings_more(paper: ParsedPaper) -> bool:
    """Whether ``paper`` says more than a title and an abstract (an id, a DOI, a version,
    authors, categories, dates, links, upvotes): only such a paper can change a stored one."""
    return bool(
        paper.arxiv_id
        or paper.doi
        or paper.version is not None
        or paper.authors
        or paper.categories
        or paper.published
        or paper.upvotes is not None
        or any(getattr(paper, name) for name in _FILLED)
    )


def find_stored(
    paper: ParsedPaper,
    *,
    uid: str,
    key: str,
    by_uid: Mapping[str, StoredRow],
    by_doi: Mapping[str, list[StoredRow]],
    by_key: Mapping[str, list[StoredRow]],
) -> StoredRow | None:
    """The stored paper ``paper`` is, if any: the one with its uid; else, for a paper with an
    arXiv id, one known by its DOI or title that has no arXiv id yet; else, for one without,
    one with its DOI or (when it has no DOI) its title."""
    if (row := by_uid.get(uid)) is not None:
        return row
    doi_rows = by_doi.get(paper.doi.lower(), []) if paper.doi else []
    if paper.arxiv_id:
        # A stored paper with another arXiv id is another paper, whatever its title.
        return next((r for r in [*doi_rows, *by_key.get(key, [])] if r.arxiv_id is None), None)
    if doi_rows:
        return doi_rows[0]
    if paper.doi:
        # A title match counts unless that paper has a DOI of its own (then it is another).
        return next((r for r in by_key.get(key, []) if r.doi is None), None)
    rows = by_key.get(key, [])
    return rows[0] if rows else None


def upvotes_recent(row: StoredRow, today: date | None) -> bool:
    """Whether the stored paper's upvotes still follow its sources: always without
    ``today``, else while its own date is within UPVOTES_REFRESH_DAYS of it."""
    if today is None or row.dump_date is None:
        return True
    return row.dump_date >= today - timedelta(days=UPVOTES_REFRESH_DAYS)


def merge_change(
    row: StoredRow, paper: ParsedPaper, *, uid: str, today: date | None = None
) -> PaperChange:
    """What ``paper`` changes in the stored ``row`` it is (see the module docstring);
    ``today`` is the fetch's date, for whether the upvotes are still refreshed."""
    change = PaperChange(row.id)
    values = change.values
    if row.arxiv_id is None and paper.arxiv_id:
        values["uid"] = uid
        values["arxiv_id"] = paper.arxiv_id
    if paper.doi and not row.doi:
        values["doi"] = paper.doi
    if paper.version is not None:
        if row.version is None or paper.version > row.version:
            values["version"] = change.new_version = paper.version
        if row.version is not None and paper.version > row.version:
            change.revised = True
            _take_text(values, paper)
    categories = _union(row.categories, paper.categories, first=change.revised)
    if categories != tuple(row.categories):
        values["categories"] = list(categories)
    replace_authors = not row.authors or change.revised
    if paper.authors and replace_authors and tuple(paper.authors) != tuple(row.authors):
        values["authors"] = list(paper.authors)
    if paper.published and row.published is None:
        values["published"] = paper.published
    for name in _FILLED:
        given = getattr(paper, name)
        if given and (change.revised or not getattr(row, name)) and given != getattr(row, name):
            values[name] = given
    refresh = row.upvotes is None or upvotes_recent(row, today)
    if paper.upvotes is not None and paper.upvotes != row.upvotes and refresh:
        values["upvotes"] = paper.upvotes
    return change


def _take_text(values: dict[str, Any], paper: ParsedPaper) -> None:
    """A newer version's title and abstract replace the stored ones (an empty one does not)."""
    if paper.title.strip():
        values["title"] = paper.title
    if paper.abstract.strip():
        values["abstract"] = paper.abstract


def _union(stored: Sequence[str], given: Sequence[str], *, first: bool) -> tuple[str, ...]:
    """Every category of both, without repeats: the stored order, or the new version's
    order first when ``first`` (its primary category leads)."""
    ordered = [*given, *stored] if first else [*stored, *given]
    return tuple(dict.fromkeys(ordered))
