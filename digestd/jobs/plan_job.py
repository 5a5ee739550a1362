"""The planning half of a send run: who is due, and what goes into each one's digest.

``plan_due_digests`` loads the window (plan_window.py: who is due, the candidate papers),
matches the queries once, and plans each digest in turn with a ``DigestPlanner``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from digestd import store
from digestd.config import Settings
from digestd.db import read_scope
from digestd.digest import Digest, PlannedDigest, QuerySource, plan_digest
from digestd.jobs.common import match_queries, stage
from digestd.jobs.plan_window import PlanningWindow, load_window
from digestd.jobs.reports import SendReport
from digestd.match import MatchResult
from digestd.message import message_id_for
from digestd.models import Delivery, Subscriber
from digestd.runtime import Runtime
from digestd.schedule import Schedule
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
        planned = self._planned(subscriber.id, row)
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

    def _planned(self, subscriber_id: int, row: Delivery | None) -> PlannedDigest | None:
        window = self.window
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
            )
        revised = window.revisions.get(subscriber_id, frozenset())
        return plan_digest(
            sources=sources_matches,
            papers=window.papers,
            already_sent=window.sent.get(subscriber_id, set()) - revised,
            max_papers=max_papers,
            stored_since=window.windows[subscriber_id],
            revised=revised,
        )

    def _prepared(self, subscriber: Subscriber, key: str, planned: PlannedDigest) -> PreparedDigest:
        assert subscriber.id is not None
        settings, secret = self.settings, self.secret
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
