"""Which subscribers are due, and which papers go into each digest, ranked and explained. Pure."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from digestd.match import Hit, PaperMatch, highlight
from digestd.render import DigestEntry

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class CandidatePaper:
    """A stored paper as the digest planner needs it."""

    id: int
    uid: str
    title: str
    abstract: str
    url: str
    dump_date: date


@dataclass(frozen=True)
class QuerySource:
    """Where a matching query came from: one of the subscriber's own, or a followed topic."""

    kind: str  # "query" or "topic"
    label: str  # the query text or the topic title

    def reason(self) -> str:
        """The words a reader sees for why a paper matched."""
        quoted = self.label if self.label.startswith(('"', "“")) else f"“{self.label}”"
        return f"your query {quoted}" if self.kind == "query" else f"topic {quoted}"


@dataclass
class _Gathered:
    score: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedDigest:
    """The papers one subscriber gets, ranked and capped, and how many more matched."""

    entries: tuple[DigestEntry, ...]
    paper_ids: tuple[int, ...]  # every new match, shown or only counted: none is sent again
    more_count: int
    digest_date: date


def local_now(now: datetime, timezone: str) -> datetime:
    """``now`` (aware) in the subscriber's timezone."""
    return now.astimezone(zoneinfo.ZoneInfo(timezone))


def digest_key(now: datetime, timezone: str) -> str:
    """The key of the digest due now: the subscriber's local date."""
    return local_now(now, timezone).date().isoformat()


def is_due(
    *,
    now: datetime,
    timezone: str,
    frequency: str,
    send_hour: int,
    weekday: str,
    last_key: str | None,
    ignore_schedule: bool = False,
) -> bool:
    """Whether a subscriber's digest is due: their send hour has come today and none went out yet.

    A weekly digest is due on ``weekday``, or on any later day once a week has passed since the
    last one, so a daemon that was down on that day catches up instead of skipping a week.
    """
    local = local_now(now, timezone)
    today = local.date().isoformat()
    if ignore_schedule:
        return True
    if last_key == today or local.hour < send_hour:
        return False
    if frequency == "weekly":
        if last_key is not None and (local.date() - date.fromisoformat(last_key)).days < 7:
            return False
        return last_key is not None or WEEKDAYS[local.weekday()] == weekday
    return True


def _merge_hits(hits: Sequence[Hit]) -> list[Hit]:
    merged: dict[tuple[str, str], int] = {}
    for hit in hits:
        key = (hit.term, hit.field)
        merged[key] = max(merged.get(key, 0), hit.count)
    return [Hit(term=term, field=field_, count=count) for (term, field_), count in merged.items()]


def plan_digest(
    *,
    sources: Sequence[tuple[QuerySource, Mapping[int, PaperMatch]]],
    papers: Mapping[int, CandidatePaper],
    already_sent: set[int] | frozenset[int],
    max_papers: int,
) -> PlannedDigest | None:
    """The digest for one subscriber from each source's matches, or None if nothing new matched.

    A paper matched by several queries or topics scores the sum of their scores and lists every
    reason; papers are ranked by score, then in the order they were stored. Papers past
    ``max_papers`` are only counted; they belong to this digest and are not sent later.
    """
    gathered: dict[int, _Gathered] = {}
    for source, matches in sources:
        for paper_id, match in matches.items():
            if paper_id in already_sent or paper_id not in papers:
                continue
            item = gathered.setdefault(paper_id, _Gathered())
            item.score += match.score
            item.hits.extend(match.hits)
            item.reasons.append(source.reason())
    if not gathered:
        return None
    ranked = sorted(gathered, key=lambda pid: (-gathered[pid].score, pid))
    chosen = ranked[:max_papers]
    entries = []
    for paper_id in chosen:
        paper, item = papers[paper_id], gathered[paper_id]
        hits = _merge_hits(item.hits)
        terms = tuple(dict.fromkeys(hit.term for hit in hits))
        entries.append(
            DigestEntry(
                uid=paper.uid,
                title=paper.title,
                abstract=paper.abstract,
                url=paper.url,
                score=round(item.score, 3),
                reasons=tuple(dict.fromkeys(item.reasons)),
                matched_terms=terms,
                title_segments=tuple(
                    highlight(paper.title, [h for h in hits if h.field == "title"])
                ),
                abstract_segments=tuple(
                    highlight(paper.abstract, [h for h in hits if h.field == "abstract"])
                ),
            )
        )
    return PlannedDigest(
        entries=tuple(entries),
        paper_ids=tuple(ranked),
        more_count=len(ranked) - len(chosen),
        digest_date=max(papers[pid].dump_date for pid in chosen),
    )
