"""Loading what planning needs: who is due (``select_due``, pure) and, for them, the
candidate papers, what was sent before, and the queries to match, in one read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.digest import CandidatePaper, QuerySource
from digestd.errors import InputError
from digestd.ingest import paper_url
from digestd.models import Delivery, Paper, Subscriber, Topic
from digestd.schedule import Schedule
from digestd.store.people import paused_on

# A paper stored while a digest was being planned is older than that digest's record; reaching
# back this far past the last completed digest keeps it a candidate (the sent list stops repeats).
_WINDOW_OVERLAP = timedelta(days=1)


def candidate(paper: Paper) -> CandidatePaper:
    """The planner's view of a stored paper."""
    assert paper.id is not None
    return CandidatePaper(
        id=paper.id,
        uid=paper.uid,
        title=paper.title,
        abstract=paper.abstract,
        url=paper_url(
            arxiv_id=paper.arxiv_id, title=paper.title, abs_url=paper.abs_url, hf_url=paper.hf_url
        ),
        dump_date=paper.dump_date,
        stored_at=paper.first_seen,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        published=paper.published,
        source=paper.source,
        upvotes=paper.upvotes,
        version=paper.version,
        revised_at=paper.revised_at,
        abs_url=paper.abs_url
        or (f"https://arxiv.org/abs/{paper.arxiv_id}" if paper.arxiv_id else ""),
        pdf_url=paper.pdf_url
        or (f"https://arxiv.org/pdf/{paper.arxiv_id}" if paper.arxiv_id else ""),
        hf_url=paper.hf_url,
    )


def _windows(
    due: list[Subscriber], completed_at: dict[int, datetime], lookback_days: int
) -> dict[int, datetime]:
    """For each due subscriber, from when stored papers are candidates: since their last
    completed digest, or for a first digest ``lookback_days`` before they subscribed."""
    windows = {}
    for subscriber in due:
        assert subscriber.id is not None
        first = subscriber.created_at - timedelta(days=lookback_days)
        last = completed_at.get(subscriber.id)
        windows[subscriber.id] = max(first, last - _WINDOW_OVERLAP) if last else first
    return windows


def _revisions(
    session: Session,
    due: list[Subscriber],
    papers: dict[int, CandidatePaper],
    windows: dict[int, datetime],
) -> dict[int, frozenset[int]]:
    """For each due subscriber who wants revised papers, the papers sent to them before that a
    newer version revised since their window: these go out again, once per version."""
    wanted = [s.id for s in due if s.revised_papers and s.id is not None]
    revised = [p for p in papers.values() if p.revised_at is not None and p.version]
    if not wanted or not revised:
        return {}
    sent = store.sent_versions(session, wanted, [p.id for p in revised])
    result: dict[int, frozenset[int]] = {}
    for subscriber_id in wanted:
        since = windows[subscriber_id]
        result[subscriber_id] = frozenset(
            p.id
            for p in revised
            if (subscriber_id, p.id) in sent
            and store.aware(p.revised_at) >= since  # type: ignore[arg-type]
            and (sent[subscriber_id, p.id] or 0) < (p.version or 0)
        )
    return result


@dataclass(frozen=True)
class DueSelection:
    """Who is due, in the order given, and the open outbox rows resumed rather than planned."""

    due: list[Subscriber]
    resumed: dict[int, Delivery]  # by subscriber id


def select_due(
    people: Iterable[Subscriber],
    *,
    last_keys: dict[int, str],
    open_rows: dict[int, Delivery],
    now: datetime,
    ignore_schedule: bool = False,
    include_paused: bool = False,
) -> DueSelection:
    """Which of ``people`` get a digest at ``now``: an open digest is resumed (unless it waits
    for its next attempt), otherwise the schedule decides. Unconfirmed sign-ups never do;
    paused and suppressed subscribers only if ``include_paused``, and neither do those whose
    pause of some days (``paused_until``) lasts past their local today."""
    due: list[Subscriber] = []
    resumed: dict[int, Delivery] = {}
    for s in people:
        assert s.id is not None
        if not (s.active or include_paused) or (s.suppressed_at and not include_paused):
            continue
        if not include_paused and paused_on(s, now):
            continue  # paused for some days: they resume by themselves after paused_until
        if s.confirmed_at is None:
            continue  # a web sign-up that was never confirmed
        row = open_rows.get(s.id)
        if row is not None:
            # An open digest is finished before a new one is planned; one waiting for
            # its next attempt waits, whatever the schedule says.
            waiting = row.status == "retry" and row.next_attempt_at is not None
            if waiting and store.aware(row.next_attempt_at) > now:  # type: ignore[arg-type]
                continue
            resumed[s.id] = row
            due.append(s)
        elif ignore_schedule or Schedule.of(s).is_due(
            now, last_key=last_keys.get(s.id), created=s.created_at
        ):
            due.append(s)
    return DueSelection(due, resumed)


@dataclass
class PlanningWindow:
    """What planning the due digests needs, read from the database in one go."""

    selection: DueSelection
    last_keys: dict[int, str]
    own_queries: dict[int, list[str]] = field(default_factory=dict)
    followed: dict[int, list[Topic]] = field(default_factory=dict)
    windows: dict[int, datetime] = field(default_factory=dict)  # candidates stored since
    papers: dict[int, CandidatePaper] = field(default_factory=dict)
    sent: dict[int, set[int]] = field(default_factory=dict)  # paper ids sent, by subscriber
    revisions: dict[int, frozenset[int]] = field(default_factory=dict)

    def query_texts(self) -> tuple[dict[object, str], dict[object, QuerySource]]:
        """The due subscribers' own queries and followed topics: their texts to match, and
        where each came from, under one key per distinct query or topic."""
        texts: dict[object, str] = {}
        sources: dict[object, QuerySource] = {}
        for subscriber in self.selection.due:
            for text in self.own_queries.get(subscriber.id or 0, []):
                texts[("q", text)] = text
                sources[("q", text)] = QuerySource("query", text)
            for topic in self.followed.get(subscriber.id or 0, []):
                texts[("t", topic.slug)] = topic.query
                sources[("t", topic.slug)] = QuerySource("topic", topic.title)
        return texts, sources


def _people(
    session: Session, only_email: str | None, include_paused: bool, now: datetime
) -> list[Subscriber]:
    """The subscribers to consider: every active one, or only ``only_email``."""
    if not only_email:
        return store.subscribers(session, active_only=True)
    person = store.subscriber_by_email(session, only_email)
    if not (person.active or include_paused):
        raise InputError(f"subscriber {person.email} is paused (resume them first)")
    if paused_on(person, now) and not include_paused:
        raise InputError(
            f"subscriber {person.email} is paused until {person.paused_until} "
            "(resume them first: subscriber edit --pause-days 0)"
        )
    return [person]


def _candidate_papers(session: Session, window: PlanningWindow) -> dict[int, CandidatePaper]:
    """The papers any due digest may carry: stored in the windows, those of resumed digests,
    and those revised in the window for subscribers who want revisions."""
    due, resumed = window.selection.due, window.selection.resumed
    stored = store.papers_since(session, min(window.windows.values()))
    resumed_ids = {pid for row in resumed.values() for pid in store.paper_id_list(row)}
    stored += store.papers_by_ids(session, resumed_ids - {p.id for p in stored})
    if any(s.revised_papers for s in due):
        # Papers stored earlier that a newer version revised in the window.
        known = {p.id for p in stored}
        since = min(window.windows[s.id] for s in due if s.revised_papers and s.id is not None)
        stored += [p for p in store.papers_revised_since(session, since) if p.id not in known]
    return {p.id: candidate(p) for p in stored if p.id is not None}


def load_window(
    session: Session,
    *,
    settings: Settings,
    now: datetime,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    include_paused: bool = False,
) -> PlanningWindow:
    """Who is due at ``now`` and everything their digests are planned from; for nobody due,
    a window with only the (empty) selection."""
    last_keys = store.last_digest_keys(session)
    selection = select_due(
        _people(session, only_email, include_paused, now),
        last_keys=last_keys,
        open_rows=store.open_deliveries(session),
        now=now,
        ignore_schedule=ignore_schedule,
        include_paused=include_paused,
    )
    window = PlanningWindow(selection, last_keys)
    if not selection.due:
        return window
    window.own_queries = store.queries_by_subscriber(session)
    window.followed = store.topics_by_subscriber(session)
    window.windows = _windows(
        selection.due, store.last_completed_at(session), settings.digest.lookback_days
    )
    window.papers = _candidate_papers(session, window)
    window.sent = store.sent_paper_ids(session, from_paper_id=min(window.papers, default=0))
    window.revisions = _revisions(session, selection.due, window.papers, window.windows)
    return window
