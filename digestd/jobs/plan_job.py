"""The planning half of a send run: who is due, and what goes into each one's digest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from digestd import store
from digestd.config import Settings
from digestd.db import session_scope
from digestd.digest import PlannedDigest, QuerySource, digest_key, is_due, plan_digest
from digestd.errors import InputError
from digestd.jobs.common import candidate, match_queries, stage
from digestd.models import Subscriber
from digestd.render import Digest
from digestd.tokens import unsubscribe_url


@dataclass(frozen=True)
class DigestOutcome:
    """What happened to one subscriber's digest."""

    email: str
    status: str  # "sent", "failed", "error", "dry-run"
    papers: int
    subject: str = ""
    detail: str = ""


@dataclass
class SendReport:
    """Outcomes of one send run."""

    outcomes: list[DigestOutcome] = field(default_factory=list)
    due: int = 0
    nothing_new: int = 0
    # (subscriber id, digest key) of due digests that found nothing new
    empty: list[tuple[int, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time spent in each stage

    def count(self, status: str) -> int:
        """How many digests ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)


@dataclass(frozen=True)
class PreparedDigest:
    """A planned and rendered digest for one subscriber, not yet sent."""

    subscriber_id: int
    email: str
    name: str
    key: str
    planned: PlannedDigest
    digest: Digest


_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
# A paper stored while a digest was being planned is older than that digest's record; reaching
# back this far past the last completed digest keeps it a candidate (the sent list stops repeats).
_WINDOW_OVERLAP = timedelta(days=1)


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


def prepare_digests(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    include_paused: bool = False,
    report: SendReport | None = None,
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
) -> Iterator[PreparedDigest]:
    """The digests of the due subscribers, each planned when the iterator reaches it.

    Subscribers, papers and matches are loaded when this is called; ``report.due`` is set then.
    Planning lazily keeps one run's memory to the digests in flight, however many are due."""
    with stage(report.seconds, "load subscribers and papers"), session_scope(engine) as session:
        if only_email:
            people = [store.subscriber_by_email(session, only_email)]
            if not (people[0].active or include_paused):
                raise InputError(f"subscriber {people[0].email} is paused (resume them first)")
        else:
            people = store.subscribers(session, active_only=True)
        last_keys = store.last_digest_keys(session)
        failed_at = store.last_failed_at(session)
        retry_after = timedelta(minutes=settings.delivery.retry_minutes)
        due = [
            s
            for s in people
            if (s.active or include_paused)
            and (ignore_schedule or now - failed_at.get(s.id or 0, _LONG_AGO) >= retry_after)
            and is_due(
                now=now,
                timezone=s.timezone,
                frequency=s.frequency,
                send_hour=s.send_hour,
                weekday=s.weekday,
                last_key=last_keys.get(s.id or 0),
                created=s.created_at,
                ignore_schedule=ignore_schedule,
            )
        ]
        report.due = len(due)
        if not due:
            return iter(())
        own_queries = store.queries_by_subscriber(session)
        followed = store.topics_by_subscriber(session)
        windows = _windows(due, store.last_completed_at(session), settings.digest.lookback_days)
        papers = {
            p.id: candidate(p)
            for p in store.papers_since(session, min(windows.values()))
            if p.id is not None
        }
        sent = store.sent_paper_ids(session, from_paper_id=min(papers, default=0))
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
        matches = match_queries(texts, papers.values())
    secret = settings.link_secret()

    def plan(subscriber: Subscriber) -> PreparedDigest | None:
        assert subscriber.id is not None
        keys = [("q", t) for t in own_queries.get(subscriber.id, [])]
        keys += [("t", t.slug) for t in followed.get(subscriber.id, [])]
        planned = plan_digest(
            sources=[(sources[k], matches.get(k)) for k in keys],
            papers=papers,
            already_sent=sent.get(subscriber.id, set()),
            max_papers=settings.digest.max_papers,
            stored_since=windows[subscriber.id],
        )
        if planned is None:
            report.nothing_new += 1
            report.empty.append((subscriber.id, digest_key(now, subscriber.timezone)))
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
            manage_url=None,
            site_name=settings.digest.site_name,
        )
        key = digest_key(now, subscriber.timezone)
        return PreparedDigest(
            subscriber.id, subscriber.email, subscriber.name, key, planned, digest
        )

    def planned_in_turn() -> Iterator[PreparedDigest]:
        for subscriber in due:
            with stage(report.seconds, "plan"):
                prepared = plan(subscriber)
            if prepared is not None:
                yield prepared

    return planned_in_turn()
