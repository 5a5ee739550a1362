"""The planning half of a send run: who is due, and what goes into each one's digest."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.db import read_scope
from digestd.digest import (
    CandidatePaper,
    PlannedDigest,
    QuerySource,
    digest_key,
    is_due,
    local_now,
    plan_digest,
)
from digestd.errors import DigestError, InputError
from digestd.jobs.common import candidate, match_queries, stage
from digestd.message import message_id_for
from digestd.models import Delivery, Subscriber
from digestd.render import Digest
from digestd.runtime import Runtime
from digestd.tokens import link_url, unsubscribe_url


@dataclass(frozen=True)
class DigestOutcome:
    """What happened to one subscriber's digest."""

    email: str
    status: str  # "sent", "retry", "failed", "dry-run"
    papers: int
    subject: str = ""
    detail: str = ""
    fault: str = ""  # a refused digest's: "recipient" (the address) or "sender" (ours)
    hint: str = ""  # what the operator can do about a failure on our side, if anything


@dataclass
class SendReport:
    """Outcomes of one send run."""

    outcomes: list[DigestOutcome] = field(default_factory=list)
    due: int = 0
    nothing_new: int = 0
    # (subscriber id, digest key, outbox row if one was open) of digests that found nothing new
    empty: list[tuple[int, str, int | None]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time spent in each stage
    resent: int = 0  # digests found "sending" after an interrupted run, and sent again
    paused: str = ""  # why the run stopped early, leaving the rest for the next run
    pause_hint: str = ""  # what the operator can do about it
    # Set when the database could not record the run's work (full, locked, unreachable).
    record_error: DigestError | None = None

    def count(self, status: str) -> int:
        """How many digests ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)


@dataclass(frozen=True)
class PreparedDigest:
    """A planned digest for one subscriber, not yet sent.

    A digest resumed from the outbox keeps its row's key, Message-ID and planning time (its
    Date), so sending it again gives the same message."""

    subscriber_id: int
    email: str
    name: str
    key: str
    planned: PlannedDigest
    digest: Digest
    message_id: str
    planned_at: datetime
    delivery_id: int | None = None  # its outbox row, once it has one
    resumed_status: str = ""  # the open row's status when resumed: planned, sending or retry
    attempts: int = 0  # attempts made before this one
    give_up_at: datetime | None = None


# A paper stored while a digest was being planned is older than that digest's record; reaching
# back this far past the last completed digest keeps it a candidate (the sent list stops repeats).
_WINDOW_OVERLAP = timedelta(days=1)


def _new_key(now: datetime, subscriber: Subscriber, last_keys: dict[int, str], forced: bool) -> str:
    """The key of a new digest: the local date; a forced send on a day that already has its
    digest gets the local time too, so it is a digest of its own."""
    key = digest_key(now, subscriber.timezone)
    if forced and last_keys.get(subscriber.id or 0, "")[:10] >= key:
        key += local_now(now, subscriber.timezone).strftime("T%H%M%S%f")
    return key


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


def prepare_digests(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    include_paused: bool = False,
    report: SendReport | None = None,
    runtime: Runtime | None = None,
) -> list[PreparedDigest]:
    """Plan the digest of every due subscriber (or only ``only_email``); nothing is recorded.

    Paused subscribers are left out unless ``include_paused`` (a preview of their digest)."""
    return list(
        plan_due_digests(
            settings,
            engine,
            now=now,
            only_email=only_email,
            ignore_schedule=ignore_schedule,
            include_paused=include_paused,
            report=report if report is not None else SendReport(),
            runtime=runtime,
        )
    )


def plan_due_digests(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    report: SendReport,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    include_paused: bool = False,
    runtime: Runtime | None = None,
) -> Iterator[PreparedDigest]:
    """The digests of the due subscribers, each planned when the iterator reaches it.

    Subscribers, papers and matches are loaded when this is called; ``report.due`` is set then.
    Planning lazily keeps one run's memory to the digests in flight, however many are due."""
    runtime = runtime if runtime is not None else Runtime(settings, engine)
    # Only reads (no write lock): a preview or a dry run answers while another process writes.
    with stage(report.seconds, "load subscribers and papers"), read_scope(engine) as session:
        if only_email:
            people = [store.subscriber_by_email(session, only_email)]
            if not (people[0].active or include_paused):
                raise InputError(f"subscriber {people[0].email} is paused (resume them first)")
        else:
            people = store.subscribers(session, active_only=True)
        last_keys = store.last_digest_keys(session)
        open_rows = store.open_deliveries(session)
        due: list[Subscriber] = []
        resumed: dict[int, Delivery] = {}
        for s in people:
            assert s.id is not None
            if not (s.active or include_paused) or (s.suppressed_at and not include_paused):
                continue
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
            elif is_due(
                now=now,
                timezone=s.timezone,
                frequency=s.frequency,
                send_hour=s.send_hour,
                weekday=s.weekday,
                last_key=last_keys.get(s.id),
                created=s.created_at,
                ignore_schedule=ignore_schedule,
            ):
                due.append(s)
        report.due = len(due)
        if not due:
            return iter(())
        own_queries = store.queries_by_subscriber(session)
        followed = store.topics_by_subscriber(session)
        windows = _windows(due, store.last_completed_at(session), settings.digest.lookback_days)
        stored = store.papers_since(session, min(windows.values()))
        resumed_ids = {pid for row in resumed.values() for pid in store.paper_id_list(row)}
        stored += store.papers_by_ids(session, resumed_ids - {p.id for p in stored})
        if any(s.revised_papers for s in due):
            # Papers stored earlier that a newer version revised in the window.
            known = {p.id for p in stored}
            since = min(windows[s.id] for s in due if s.revised_papers and s.id is not None)
            stored += [p for p in store.papers_revised_since(session, since) if p.id not in known]
        papers = {p.id: candidate(p) for p in stored if p.id is not None}
        sent = store.sent_paper_ids(session, from_paper_id=min(papers, default=0))
        revisions = _revisions(session, due, papers, windows)
    sources: dict[object, QuerySource] = {}
    texts: dict[object, str] = {}
    for subscriber in due:
        for text in own_queries.get(subscriber.id or 0, []):
            texts[("q", text)] = text
            sources[("q", text)] = QuerySource("query", text)
        for topic in followed.get(subscriber.id or 0, []):
            texts[("t", topic.slug)] = topic.query
            sources[("t", topic.slug)] = QuerySource("topic", topic.title)
    with stage(report.seconds, "match"):
        matches = match_queries(texts, papers.values(), cache=runtime.match)
    secret = runtime.link_secret
    domain = runtime.identity.domain

    def plan(subscriber: Subscriber) -> PreparedDigest | None:
        assert subscriber.id is not None
        keys = [("q", t) for t in own_queries.get(subscriber.id, [])]
        keys += [("t", t.slug) for t in followed.get(subscriber.id, [])]
        sources_matches = [(sources[k], matches.get(k)) for k in keys]
        row = resumed.get(subscriber.id)
        if row is not None:
            # The same papers as when it was planned, ranked again (for the reasons shown).
            ids = store.paper_id_list(row)
            planned = plan_digest(
                sources=sources_matches,
                papers={pid: papers[pid] for pid in ids if pid in papers},
                already_sent=frozenset(),
                max_papers=settings.digest.max_papers,
            )
        else:
            revised = revisions.get(subscriber.id, frozenset())
            planned = plan_digest(
                sources=sources_matches,
                papers=papers,
                already_sent=sent.get(subscriber.id, set()) - revised,
                max_papers=settings.digest.max_papers,
                stored_since=windows[subscriber.id],
                revised=revised,
            )
        key = row.digest_key if row else _new_key(now, subscriber, last_keys, ignore_schedule)
        if planned is None:
            report.nothing_new += 1
            report.empty.append((subscriber.id, key, row.id if row else None))
            return None
        digest = Digest(
            subscriber_name=subscriber.name,
            subscriber_email=subscriber.email,
            digest_date=planned.digest_date,
            entries=planned.entries,
            more_count=planned.more_count,
            more_papers=planned.more_papers,
            unsubscribe_url=unsubscribe_url(
                settings.feeds.base_url, secret, subscriber.id, subscriber.email
            ),
            manage_url=link_url(
                settings.feeds.base_url, secret, "manage", subscriber.id, subscriber.email
            ),
            site_name=settings.digest.site_name,
        )
        prepared = PreparedDigest(
            subscriber.id,
            subscriber.email,
            subscriber.name,
            key,
            planned,
            digest,
            message_id=message_id_for(
                secret=secret, subscriber_id=subscriber.id, digest_key=key, domain=domain
            ),
            planned_at=now,
        )
        if row is None:
            return prepared
        # Resumed: the row's Message-ID and Date, so the message is the one first sent.
        return dataclasses.replace(
            prepared,
            message_id=row.message_id,
            planned_at=store.aware(row.created_at),
            delivery_id=row.id,
            resumed_status=row.status,
            attempts=row.attempts,
            give_up_at=store.aware(row.give_up_at) if row.give_up_at else None,
        )

    def planned_in_turn() -> Iterator[PreparedDigest]:
        for subscriber in due:
            with stage(report.seconds, "plan"):
                prepared = plan(subscriber)
            if prepared is not None:
                yield prepared

    return planned_in_turn()
