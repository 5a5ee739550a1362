"""The planning half of a send run: who is due, and what goes into each one's digest.

``plan_due_digests`` loads the window (plan_window.py: who is due, the candidate papers),
matches the queries once, and plans each digest in turn with a ``DigestPlanner``.
``stored_digest`` builds a digest sent before again, as a resumed send would, for the
"View in browser" page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.db import read_scope
from digestd.digest import Digest, PlannedDigest, QuerySource, plan_digest
from digestd.jobs.common import match_queries, stage
from digestd.jobs.new_papers import StoredTimes
from digestd.jobs.plan_window import (
    DueSelection,
    PlanningWindow,
    _windows,
    candidate,
    load_window,
)
from digestd.jobs.reports import SendReport
from digestd.match import MatchResult
from digestd.message import message_id_for
from digestd.models import Delivery, Subscriber
from digestd.runtime import Runtime
from digestd.schedule import Schedule
from digestd.store.stored_digests import carried_delivery, completed_before, stored_count
from digestd.tokens import link_url, unsubscribe_url


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
    claimant: str = ""  # the process that sends it (Runtime.node_id), once queued


def _new_key(now: datetime, subscriber: Subscriber, last_keys: dict[int, str], forced: bool) -> str:
    """The key of a new digest: the local date; a forced send on a day that already has its
    digest gets the local time too, so it is a digest of its own."""
    schedule = Schedule.of(subscriber)
    key = schedule.digest_key(now)
    if forced and last_keys.get(subscriber.id or 0, "")[:10] >= key:
        key += schedule.local(now).strftime("T%H%M%S%f")
    return key


@dataclass(frozen=True)
class DigestPlanner:
    """Plans one due subscriber's digest from a loaded window and its matches."""

    settings: Settings
    window: PlanningWindow
    matches: MatchResult[object, int]
    sources: dict[object, QuerySource]
    secret: str
    domain: str
    now: datetime
    forced: bool  # the schedule was ignored: a digest of its own even on a day that has one

    def plan(self, subscriber: Subscriber, report: SendReport) -> PreparedDigest | None:
        """The subscriber's digest, resumed from its open row or new; None (and counted in
        ``report``) when it has nothing to carry."""
        assert subscriber.id is not None
        row = self.window.selection.resumed.get(subscriber.id)
        planned = self._planned(subscriber, row)
        key = (
            row.digest_key
            if row
            else _new_key(self.now, subscriber, self.window.last_keys, self.forced)
        )
        if planned is None:
            report.nothing_new += 1
            report.empty.append((subscriber.id, key, row.id if row else None))
            return None
        prepared = self._prepared(subscriber, key, planned)
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

    def _planned(self, subscriber: Subscriber, row: Delivery | None) -> PlannedDigest | None:
        window, subscriber_id = self.window, subscriber.id or 0
        keys = [("q", t) for t in window.own_queries.get(subscriber_id, [])]
        keys += [("t", t.slug) for t in window.followed.get(subscriber_id, [])]
        sources_matches = [(self.sources[k], self.matches.get(k)) for k in keys]
        max_papers = self.settings.digest.max_papers
        if row is not None:
            # The same papers as when it was planned, ranked again (for the reasons shown).
            ids = store.paper_id_list(row)
            return plan_digest(
                sources=sources_matches,
                papers={pid: window.papers[pid] for pid in ids if pid in window.papers},
                already_sent=frozenset(),
                max_papers=max_papers,
                order=subscriber.digest_order,
            )
        revised = window.revisions.get(subscriber_id, frozenset())
        return plan_digest(
            sources=sources_matches,
            papers=window.papers,
            already_sent=window.sent.get(subscriber_id, set()) - revised,
            max_papers=max_papers,
            stored_since=window.windows[subscriber_id],
            revised=revised,
            order=subscriber.digest_order,
        )

    @cached_property
    def stored_times(self) -> StoredTimes:
        """When the window's candidate papers were stored, sorted once for every digest."""
        return StoredTimes.of(self.window.papers.values())

    def _counts(self, subscriber_id: int) -> tuple[int, int]:
        """How many new papers the subscriber's queries were run over, and how many queries
        and followed topics they have."""
        window = self.window
        since = window.windows.get(subscriber_id)
        new_count = self.stored_times.count_since(since) if since is not None else 0
        queries = len(window.own_queries.get(subscriber_id, []))
        return new_count, queries + len(window.followed.get(subscriber_id, []))

    def _prepared(self, subscriber: Subscriber, key: str, planned: PlannedDigest) -> PreparedDigest:
        assert subscriber.id is not None
        settings, secret = self.settings, self.secret
        base, email = settings.feeds.base_url, subscriber.email
        new_count, query_count = self._counts(subscriber.id)
        digest = Digest(
            subscriber_name=subscriber.name,
            subscriber_email=subscriber.email,
            digest_date=planned.digest_date,
            entries=planned.entries,
            more_count=planned.more_count,
            more_papers=planned.more_papers,
            unsubscribe_url=unsubscribe_url(base, secret, subscriber.id, email),
            manage_url=link_url(base, secret, "manage", subscriber.id, email),
            site_name=settings.digest.site_name,
            view_url=link_url(base, secret, "digest", subscriber.id, email, reference=key),
            pause_url=link_url(base, secret, "pause", subscriber.id, email),
            language=subscriber.language,
            new_count=new_count,
            query_count=query_count,
        )
        return PreparedDigest(
            subscriber.id,
            subscriber.email,
            subscriber.name,
            key,
            planned,
            digest,
            message_id=message_id_for(
                secret=secret, subscriber_id=subscriber.id, digest_key=key, domain=self.domain
            ),
            planned_at=self.now,
        )


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
        window = load_window(
            session,
            settings=settings,
            now=now,
            only_email=only_email,
            ignore_schedule=ignore_schedule,
            include_paused=include_paused,
        )
    due = window.selection.due
    report.due = len(due)
    if not due:
        return iter(())
    texts, sources = window.query_texts()
    with stage(report.seconds, "match"):
        matches = match_queries(texts, window.papers.values(), cache=runtime.match)
    secret = runtime.link_secret
    domain = runtime.identity.domain
    planner = DigestPlanner(
        settings, window, matches, sources, secret, domain, now, forced=ignore_schedule
    )

    def planned_in_turn() -> Iterator[PreparedDigest]:
        for subscriber in due:
            with stage(report.seconds, "plan"):
                prepared = planner.plan(subscriber, report)
            if prepared is not None:
                yield prepared

    return planned_in_turn()


def _row_window(
    session: Session, settings: Settings, subscriber: Subscriber, row: Delivery
) -> PlanningWindow:
    """The window of one stored digest: its subscriber due, resuming its row, over the row's
    papers still stored, with the subscriber's current queries and topics."""
    assert subscriber.id is not None
    window = PlanningWindow(DueSelection([subscriber], {subscriber.id: row}), last_keys={})
    window.own_queries = {subscriber.id: store.queries_of(session, subscriber.id)}
    window.followed = {subscriber.id: store.topics_of(session, subscriber.id)}
    # Its window began where the digest completed before it ended (as when it was planned).
    last = completed_before(session, subscriber.id, store.aware(row.created_at))
    completed = {subscriber.id: last} if last is not None else {}
    window.windows = _windows([subscriber], completed, settings.digest.lookback_days)
    papers = store.papers_by_ids(session, store.paper_id_list(row))
    window.papers = {paper.id: candidate(paper) for paper in papers if paper.id is not None}
    return window


def stored_digest(
    settings: Settings, engine: Engine, subscriber_id: int, digest_key: str, *, runtime: Runtime
) -> Digest | None:
    """The digest the subscriber's outbox row for ``digest_key`` was mailed as, built again
    the way a send run resumes a row: its papers still stored, ranked with the subscriber's
    current queries and topics. None if they have no such digest that carried papers, or
    none of its papers is still stored and matched. Reads only."""
    with read_scope(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        row = carried_delivery(session, subscriber_id, digest_key)
        if subscriber is None or row is None:
            return None
        window = _row_window(session, settings, subscriber, row)
        planned_at = store.aware(row.created_at)
        new_count = stored_count(session, window.windows[subscriber_id], planned_at)
    texts, sources = window.query_texts()
    # No runtime cache: one page's few papers must not push a send run's index out of it.
    matches = match_queries(texts, window.papers.values())
    secret, domain = runtime.link_secret, runtime.identity.domain
    planner = DigestPlanner(
        settings, window, matches, sources, secret, domain, planned_at, forced=False
    )
    prepared = planner.plan(subscriber, SendReport())
    if prepared is None:
        return None
    return dataclasses.replace(prepared.digest, new_count=new_count)
