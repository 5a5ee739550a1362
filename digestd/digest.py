"""Which subscribers are due, and which papers go into each digest, ranked and explained. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from digestd.formatting import NO_BYLINE, Byline, paper_byline
from digestd.match import Hit, PaperMatch, highlight, hit_labels
from digestd.schedule import Schedule

MORE_LISTED = 50  # papers past the cap are listed by title up to this many, then only counted


@dataclass(frozen=True)
class CandidatePaper:
    """A stored paper as the digest planner needs it."""

    id: int
    uid: str
    title: str
    abstract: str
    url: str
    dump_date: date
    stored_at: datetime
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # primary first
    published: date | None = None
    source: str = ""  # the source that first stored it
    upvotes: int | None = None
    version: int | None = None
    revised_at: datetime | None = None  # when a newer version replaced the stored text
    abs_url: str = ""  # the paper's abstract page, where known
    pdf_url: str = ""
    hf_url: str = ""  # its Hugging Face paper page


@dataclass(frozen=True)
class DigestEntry:
    """One matched paper as shown in a digest."""

    uid: str
    title: str
    abstract: str
    url: str
    score: float
    reasons: tuple[str, ...]
    matched_terms: tuple[str, ...]
    title_segments: tuple[tuple[str, bool], ...]
    abstract_segments: tuple[tuple[str, bool], ...]
    byline: Byline = NO_BYLINE  # authors, date, categories or source, upvotes
    # The row of links under it: (kind, url), kind one of "abstract", "pdf", "hf"
    links: tuple[tuple[str, str], ...] = ()
    # What the reader's language needs to say the byline and the reasons in its own words: the
    # paper's date, upvotes, the version it is sent again for, and (kind, label) of each query
    # or topic that found it ("query" or "topic").
    day: date | None = None
    upvotes: int | None = None
    revised_version: int | None = None
    found_in: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Digest:
    """Everything one subscriber's digest for one day shows."""

    subscriber_name: str
    subscriber_email: str
    digest_date: date
    entries: tuple[DigestEntry, ...]
    more_count: int
    unsubscribe_url: str
    manage_url: str | None
    site_name: str
    # (title, url) of papers past the cap, listed by title only; may be fewer than more_count
    more_papers: tuple[tuple[str, str], ...] = ()
    view_url: str | None = None  # the signed "View in browser" page of this digest
    pause_url: str | None = None  # the signed page that pauses digests for some days
    language: str = "en"  # of the fixed words and dates ("en", "de")
    new_count: int = 0  # new papers the subscriber's queries were run over (0: not known)
    query_count: int = 0  # the subscriber's queries and followed topics


@dataclass(frozen=True)
class QuerySource:
    """Where a matching query came from: one of the subscriber's own, or a followed topic."""

    kind: str  # "query" or "topic"
    label: str  # the query text or the topic title

    def reason(self) -> str:
        """The words a reader sees for why a paper matched."""
        quoted = self.label if self.label.startswith(('"', "“")) else f"“{self.label}”"
        return f"your query {quoted}" if self.kind == "query" else f"topic {quoted}"


class SourceMatches(Protocol):
    """One query's matched papers: each paper's score, and its explanation when asked."""

    def scores(self) -> Mapping[int, float]:
        """The score of every matched paper, cheaper than their explanations."""
        ...

    def __getitem__(self, paper_id: int, /) -> PaperMatch: ...


@dataclass(frozen=True)
class PlannedDigest:
    """The papers one subscriber gets, ranked and capped, and how many more matched."""

    entries: tuple[DigestEntry, ...]
    paper_ids: tuple[int, ...]  # every new match, shown or only counted: none is sent again
    more_count: int
    more_papers: tuple[tuple[str, str], ...]  # (title, url) of the first papers past the cap
    digest_date: date


def local_now(now: datetime, timezone: str) -> datetime:
    """``now`` (aware) in the subscriber's timezone."""
    return Schedule(timezone=timezone).local(now)


def digest_key(now: datetime, timezone: str) -> str:
    """The key of the digest due now: the subscriber's local date."""
    return Schedule(timezone=timezone).digest_key(now)


def is_due(
    *,
    now: datetime,
    timezone: str,
    frequency: str,
    send_hour: int,
    weekday: str,
    last_key: str | None,
    created: datetime,
    ignore_schedule: bool = False,
) -> bool:
    """Whether a subscriber's scheduled digest is due now (see ``Schedule.is_due``)."""
    if ignore_schedule:
        return True
    schedule = Schedule(frequency, send_hour, weekday, timezone)
    return schedule.is_due(now, last_key=last_key, created=created)


def _merge_hits(hits: Sequence[Hit]) -> list[Hit]:
    merged: dict[tuple[str, str], int] = {}
    for hit in hits:
        key = (hit.term, hit.field)
        merged[key] = max(merged.get(key, 0), hit.count)
    return [Hit(term=term, field=field_, count=count) for (term, field_), count in merged.items()]


def _byline(paper: CandidatePaper, *, revised: bool) -> Byline:
    """The paper's byline; a paper sent again for its new version says so first."""
    byline = paper_byline(paper)
    if revised:
        return dataclasses.replace(byline, revision=f"new version (v{paper.version})")
    return byline


def _scores(
    sources: Sequence[tuple[QuerySource, SourceMatches]],
    papers: Mapping[int, CandidatePaper],
    already_sent: set[int] | frozenset[int],
    stored_since: datetime | None,
    revised: frozenset[int],
) -> tuple[dict[int, float], dict[int, list[int]]]:
    """Each candidate paper's summed score, and the numbers of the sources that matched it."""
    totals: dict[int, float] = {}
    matched_by: dict[int, list[int]] = {}
    for number, (_source, matches) in enumerate(sources):
        for paper_id, score in matches.scores().items():
            if paper_id in already_sent:
                continue
            if paper_id in totals:
                totals[paper_id] += score
                matched_by[paper_id].append(number)
                continue
            paper = papers.get(paper_id)
            if paper is None or (
                stored_since is not None
                and paper.stored_at < stored_since
                and paper_id not in revised
            ):
                continue
            totals[paper_id] = score
            matched_by[paper_id] = [number]
    return totals, matched_by


def _entry(
    paper: CandidatePaper,
    found_by: Sequence[tuple[QuerySource, SourceMatches]],
    *,
    score: float,
    revised: bool,
) -> DigestEntry:
    """One paper as its digest shows it: why it matched, what to highlight, its byline."""
    hits = _merge_hits([hit for _, found in found_by for hit in found[paper.id].hits])
    return DigestEntry(
        uid=paper.uid,
        title=paper.title,
        abstract=paper.abstract,
        url=paper.url,
        score=round(score, 3),
        reasons=tuple(dict.fromkeys(source.reason() for source, _ in found_by)),
        matched_terms=hit_labels(hits, authors=paper.authors, categories=paper.categories),
        title_segments=tuple(highlight(paper.title, [h for h in hits if h.field == "title"])),
        abstract_segments=tuple(
            highlight(paper.abstract, [h for h in hits if h.field == "abstract"])
        ),
        byline=_byline(paper, revised=revised),
        day=paper.published or paper.dump_date,
        upvotes=paper.upvotes,
        revised_version=paper.version if revised else None,
        found_in=tuple(dict.fromkeys((source.kind, source.label) for source, _ in found_by)),
        links=tuple(
            (kind, url)
            for kind, url in (
                ("abstract", paper.abs_url),
                ("pdf", paper.pdf_url),
                ("hf", paper.hf_url),
            )
            if url
        ),
    )


def _order_key(
    order: str, totals: Mapping[int, float], papers: Mapping[int, CandidatePaper]
) -> Callable[[int], tuple[float, ...]]:
    """The sort key of a paper id for ``order`` (see ``plan_digest``)."""
    if order == "newest":
        return lambda pid: (
            -(papers[pid].published or papers[pid].dump_date).toordinal(),
            -totals[pid],
            pid,
        )
    if order == "upvotes":
        return lambda pid: (-(papers[pid].upvotes or -1), -totals[pid], pid)
    return lambda pid: (-totals[pid], pid)


def plan_digest(
    *,
    sources: Sequence[tuple[QuerySource, SourceMatches]],
    papers: Mapping[int, CandidatePaper],
    already_sent: set[int] | frozenset[int],
    max_papers: int,
    stored_since: datetime | None = None,
    revised: frozenset[int] = frozenset(),
    order: str = "relevance",
) -> PlannedDigest | None:
    """The digest for one subscriber from each source's matches, or None if nothing new matched.

    A paper matched by several queries or topics scores the sum of their scores and lists every
    reason; papers are ranked by score, then in the order they were stored. Papers past
    ``max_papers`` are listed by title only; they belong to this digest and are not sent
    later. Papers stored before ``stored_since`` are left out, except ``revised`` ones (sent
    before; a newer version came since, and the subscriber wants revised papers).

    ``order`` is the subscriber's choice: "relevance" (score), "newest" (publication date,
    else the dump's date) or "upvotes" (most upvoted first, papers without upvotes last); ties
    go by score. Which papers make the cap follows the same order.
    """
    totals, matched_by = _scores(sources, papers, already_sent, stored_since, revised)
    if not totals:
        return None
    ranked = sorted(totals, key=_order_key(order, totals, papers))
    chosen = ranked[:max_papers]
    entries = []
    for paper_id in chosen:
        # Hits are worked out only for the papers shown; ranking needed only scores.
        found_by = [sources[number] for number in matched_by[paper_id]]
        entries.append(
            _entry(
                papers[paper_id],
                found_by,
                score=totals[paper_id],
                revised=paper_id in revised,
            )
        )
    return PlannedDigest(
        entries=tuple(entries),
        paper_ids=tuple(ranked),
        more_count=len(ranked) - len(chosen),
        more_papers=tuple(
            (papers[pid].title, papers[pid].url)
            for pid in ranked[len(chosen) : len(chosen) + MORE_LISTED]
        ),
        digest_date=max(papers[pid].dump_date for pid in chosen),
    )
