"""The ingest, digest and feeds jobs: they wire the stages. One bad item is logged and counted,
the run goes on. Each job is also a one-shot CLI command."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from digestd import store
from digestd.config import Settings
from digestd.db import session_scope
from digestd.deliver import FileSender, Sender, SmtpSender, build_message
from digestd.digest import (
    CandidatePaper,
    PlannedDigest,
    QuerySource,
    digest_key,
    is_due,
    plan_digest,
)
from digestd.errors import DumpError, QueryError
from digestd.feeds import FeedEntry, TopicFeed, write_feeds
from digestd.ingest import dump_files, move_into, paper_url, quarantine_file, read_dump_file
from digestd.match import CompiledQuery, analyze_paper, compile_query, match_papers
from digestd.models import Paper
from digestd.render import Digest, render_digest
from digestd.tokens import unsubscribe_url

log = logging.getLogger("digestd")
Progress = Callable[[str, int], None]  # called with (item name, total items) as each item starts


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# -- ingest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one dump file."""

    path: Path
    status: str  # "ingested", "already ingested" or "quarantined"
    new: int = 0
    known: int = 0
    detail: str = ""


@dataclass
class IngestReport:
    """Per-file outcomes of one ingest run and their totals."""

    files: list[FileOutcome] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(f.new for f in self.files)

    @property
    def known(self) -> int:
        return sum(f.known for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.status == "quarantined" for f in self.files)


def run_ingest(
    settings: Settings,
    engine: Engine,
    paths: Sequence[Path] | None = None,
    *,
    reference: date | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest dump files (default: the inbox). Each file is stored whole in one transaction or
    quarantined with its reason; files from the inbox are moved to the processed folder."""
    from_inbox = paths is None
    inbox = settings.folder("inbox")
    if from_inbox:
        inbox.mkdir(parents=True, exist_ok=True)
    files = dump_files([inbox] if from_inbox else list(paths or []))
    today = reference or utc_now().date()
    report = IngestReport()
    for path in files:
        if progress:
            progress(path.name, len(files))
        report.files.append(_ingest_one(settings, engine, path, today, from_inbox))
    return report


def _ingest_one(
    settings: Settings, engine: Engine, path: Path, today: date, from_inbox: bool
) -> FileOutcome:
    try:
        dump_file = read_dump_file(path, reference=today)
    except DumpError as exc:
        target = quarantine_file(path, f"{path.name}: {exc}", folder=settings.folder("quarantine"))
        log.warning("quarantined %s: %s (now %s)", path, exc, target)
        return FileOutcome(path, "quarantined", detail=str(exc))
    for warning in dump_file.parsed.warnings:
        log.warning("%s: %s", path, warning)
    with session_scope(engine) as session:
        if store.dump_by_sha256(session, dump_file.sha256):
            outcome = FileOutcome(path, "already ingested", known=len(dump_file.parsed.papers))
        else:
            new, known = store.store_dump(session, dump_file, now=utc_now())
            outcome = FileOutcome(
                path, "ingested", new=new, known=known, detail="; ".join(dump_file.parsed.warnings)
            )
    if from_inbox:
        move_into(path, settings.folder("processed"))
    log.info(
        "%s: %s, %d new, %d already known", path.name, outcome.status, outcome.new, outcome.known
    )
    return outcome


# -- matching helpers shared by digests, feeds and the CLI ---------------------------------------


def candidate(paper: Paper) -> CandidatePaper:
    """The planner's view of a stored paper."""
    assert paper.id is not None
    return CandidatePaper(
        id=paper.id,
        uid=paper.uid,
        title=paper.title,
        abstract=paper.abstract,
        url=paper_url(arxiv_id=paper.arxiv_id, title=paper.title),
        dump_date=paper.dump_date,
    )


def compile_all(queries: dict[object, str]) -> tuple[dict[object, CompiledQuery], list[str]]:
    """Compile every query once; a stored query that no longer parses is skipped and reported."""
    compiled: dict[object, CompiledQuery] = {}
    errors: list[str] = []
    for key, text in queries.items():
        try:
            compiled[key] = compile_query(text)
        except QueryError as exc:
            errors.append(str(exc))
            log.error("skipping query %r: %s", text, exc)
    return compiled, errors


# -- digests ------------------------------------------------------------------------------------


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
    report = report if report is not None else SendReport()
    with session_scope(engine) as session:
        if only_email:
            people = [store.subscriber_by_email(session, only_email)]
        else:
            people = store.subscribers(session, active_only=True)
        last_keys = store.last_digest_keys(session)
        due = [
            s
            for s in people
            if (s.active or include_paused)
            and is_due(
                now=now,
                timezone=s.timezone,
                frequency=s.frequency,
                send_hour=s.send_hour,
                weekday=s.weekday,
                last_key=last_keys.get(s.id or 0),
                ignore_schedule=ignore_schedule,
            )
        ]
        report.due = len(due)
        if not due:
            return []
        own_queries = store.queries_by_subscriber(session)
        followed = store.topics_by_subscriber(session)
        sent = store.sent_paper_ids(session)
        since = now - timedelta(days=settings.digest.lookback_days)
        papers = {
            p.id: candidate(p) for p in store.papers_since(session, since) if p.id is not None
        }
    sources: dict[object, QuerySource] = {}
    texts: dict[object, str] = {}
    for subscriber in due:
        for text in own_queries.get(subscriber.id or 0, []):
            texts[("q", text)] = text
            sources[("q", text)] = QuerySource("query", text)
        for topic in followed.get(subscriber.id or 0, []):
            texts[("t", topic.slug)] = topic.query
            sources[("t", topic.slug)] = QuerySource("topic", topic.title)
    compiled, _errors = compile_all(texts)
    analyzed = {pid: analyze_paper(p.title, p.abstract) for pid, p in papers.items()}
    matches = match_papers(compiled, analyzed)
    secret = settings.link_secret()
    prepared = []
    for subscriber in due:
        assert subscriber.id is not None
        keys = [("q", t) for t in own_queries.get(subscriber.id, [])]
        keys += [("t", t.slug) for t in followed.get(subscriber.id, [])]
        planned = plan_digest(
            sources=[(sources[k], matches.get(k, {})) for k in keys],
            papers=papers,
            already_sent=sent.get(subscriber.id, set()),
            max_papers=settings.digest.max_papers,
        )
        if planned is None:
            report.nothing_new += 1
            continue
        digest = Digest(
            subscriber_name=subscriber.name,
            subscriber_email=subscriber.email,
            digest_date=planned.digest_date,
            entries=planned.entries,
            more_count=planned.more_count,
            unsubscribe_url=unsubscribe_url(settings.feeds.base_url, secret, subscriber.id),
            manage_url=None,
            site_name=settings.digest.site_name,
        )
        prepared.append(
            PreparedDigest(
                subscriber.id,
                subscriber.email,
                subscriber.name,
                digest_key(now, subscriber.timezone),
                planned,
                digest,
            )
        )
    return prepared


def open_sender(settings: Settings) -> AbstractAsyncContextManager[Sender]:
    """The sender the config asks for: .eml files in the outbox, or SMTP."""
    if settings.delivery.backend == "smtp":
        smtp = settings.smtp
        return SmtpSender(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username or None,
            password=smtp.password or None,
            timeout=smtp.timeout,
            ca_file=smtp.ca_file or None,
        )
    return FileSender(settings.folder("outbox"))


async def run_send(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SendReport:
    """Send every due digest and record what went out, so nothing is ever sent twice."""
    now = now or utc_now()
    report = SendReport()
    prepared = prepare_digests(
        settings,
        engine,
        now=now,
        only_email=only_email,
        ignore_schedule=ignore_schedule,
        report=report,
    )
    if dry_run or not prepared:
        for item in prepared:
            rendered = render_digest(item.digest, templates_dir=settings.templates_dir)
            report.outcomes.append(
                DigestOutcome(item.email, "dry-run", len(item.planned.entries), rendered.subject)
            )
        return report
    async with open_sender(settings) as sender:
        for item in prepared:
            if progress:
                progress(item.email, len(prepared))
            report.outcomes.append(await _send_one(settings, engine, sender, item, now))
    return report


async def _send_one(
    settings: Settings, engine: Engine, sender: Sender, item: PreparedDigest, now: datetime
) -> DigestOutcome:
    count = len(item.planned.entries)
    try:
        rendered = render_digest(item.digest, templates_dir=settings.templates_dir)
        message = build_message(
            rendered,
            from_address=settings.smtp.from_address,
            from_name=settings.smtp.from_name,
            to_address=item.email,
            to_name=item.name,
            list_id=settings.list_id,
            unsubscribe_url=item.digest.unsubscribe_url,
            date=now,
        )
    except Exception as exc:  # one subscriber's template or header problem must not stop the run
        log.exception("cannot build the digest for %s", item.email)
        return DigestOutcome(item.email, "error", count, detail=f"{type(exc).__name__}: {exc}")
    result = await sender.send(message)
    status = "sent" if result.ok else "failed"
    with session_scope(engine) as session:
        store.record_delivery(
            session,
            subscriber_id=item.subscriber_id,
            digest_key=item.key,
            status=status,
            message_id=result.message_id,
            paper_ids=item.planned.paper_ids,
            reply=result.reply,
            now=utc_now(),
        )
    if not result.ok:
        log.warning("digest to %s refused: %s", item.email, result.reply)
    return DigestOutcome(item.email, status, count, rendered.subject, result.reply)


# -- feeds --------------------------------------------------------------------------------------


def feeds_out_of_date(settings: Settings, engine: Engine) -> bool:
    """Whether the feeds folder lacks the index or holds other topics than the database."""
    folder = settings.folder("feeds")
    with session_scope(engine) as session:
        slugs = {topic.slug for topic in store.topics(session)}
    written = {path.stem for path in folder.glob("*.atom")}
    return not (folder / "index.html").exists() or slugs != written


def run_feeds(settings: Settings, engine: Engine) -> list[Path]:
    """Rebuild every topic's Atom feed and the feeds index."""
    with session_scope(engine) as session:
        topic_rows = store.topics(session)
        papers = store.all_papers(session)
    compiled, _errors = compile_all({t.slug: t.query for t in topic_rows})
    analyzed = {p.id: analyze_paper(p.title, p.abstract) for p in papers}
    matches = match_papers(compiled, analyzed)
    feeds = []
    for topic in topic_rows:
        hits = matches.get(topic.slug, {})
        entries = [
            FeedEntry(
                uid=p.uid,
                title=p.title,
                abstract=p.abstract,
                url=paper_url(arxiv_id=p.arxiv_id, title=p.title),
                published=p.first_seen,
                matched_terms=hits[p.id].terms,
            )
            for p in papers
            if p.id in hits
        ][: settings.feeds.max_entries]
        feeds.append(
            TopicFeed(slug=topic.slug, title=topic.title, query=topic.query, entries=tuple(entries))
        )
    return write_feeds(
        feeds,
        out_dir=settings.folder("feeds"),
        base_url=settings.feeds.base_url,
        author_name=settings.feeds.author_name,
        site_name=settings.digest.site_name,
        templates_dir=settings.templates_dir,
    )
