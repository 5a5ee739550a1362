"""The fetch job: poll configured sources once each; what one returns is stored whole in one
transaction or kept in quarantine with its reason, and its state records how it fared. One
failing source never stops the others."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd import store
from digestd.config import Settings
from digestd.db import database_error, read_scope, session_scope
from digestd.errors import BusyError, DigestError, DumpError, NotFoundError, StorageError
from digestd.ingest import DumpFile, parse_dump_bytes, quarantine_file
from digestd.jobs.common import log
from digestd.jobs.reports import Progress
from digestd.runtime import utc_now
from digestd.sources import (
    Fetched,
    FetchError,
    HostGate,
    NotModified,
    SourceClient,
    SourceSpec,
    Validators,
    host_gate,
)
from digestd.trending import ensure_trending

FAILED = ("failed", "quarantined")
_SUFFIXES = {
    "text": ".txt",
    "arxiv-api": ".xml",
    "arxiv-rss": ".xml",
    "hf-json": ".json",
    "jsonl": ".jsonl",
}


@dataclass(frozen=True)
class SourceOutcome:
    """What happened to one source in one poll."""

    name: str
    # "stored", "already ingested", "not modified", "empty day", "quarantined" or "failed"
    status: str
    papers: int = 0
    new: int = 0
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Whether the poll failed (nothing was stored)."""
        return self.status in FAILED


@dataclass
class FetchReport:
    """Per-source outcomes of one fetch run."""

    sources: list[SourceOutcome] = field(default_factory=list)
    # Why the run stopped before the other sources (the database cannot be written): they wait.
    stopped: DigestError | None = None

    @property
    def new(self) -> int:
        """Papers stored for the first time."""
        return sum(o.new for o in self.sources)

    @property
    def failed(self) -> list[SourceOutcome]:
        """The sources whose poll failed."""
        return [o for o in self.sources if o.failed]


def selected_sources(settings: Settings, names: Sequence[str] | None = None) -> list[SourceSpec]:
    """The configured sources named (all of them by default); NotFoundError for a name that
    is not configured."""
    if not names:
        return list(settings.sources)
    by_name = {spec.name: spec for spec in settings.sources}
    for name in names:
        if name not in by_name:
            known = ", ".join(by_name) or "none configured"
            raise NotFoundError(
                f"no source named {name!r}", hint=f"[[sources]] in the config: {known}"
            )
    return [by_name[name] for name in dict.fromkeys(names)]


def run_fetch(
    settings: Settings,
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    gate: HostGate | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchReport:
    """Poll the sources ``names`` (default: all) once each, through ``gate`` (the runtime's;
    a new one on ``engine`` by default). ``clock`` dates what is recorded; ``sleep`` waits
    between tries."""
    specs = selected_sources(settings, names)
    gate = gate or host_gate(engine, settings.fetching)
    report = FetchReport()
    client = SourceClient(settings.fetching, contact=settings.fetch_contact, gate=gate, sleep=sleep)
    with client:
        for spec in specs:
            if progress:
                progress(spec.name, len(specs))
            try:
                outcome = _poll(settings, engine, client, spec, clock)
            except SQLAlchemyError as exc:
                error = database_error(exc, url=engine.url)
                report.sources.append(SourceOutcome(spec.name, "failed", detail=str(error)))
                if isinstance(error, StorageError | BusyError):
                    report.stopped = error  # every other source would fail the same way
                    break
                log.error("cannot record source %s: %s", spec.name, error)
                continue
            except Exception as exc:  # a bug met by one source's answer must not stop the others
                log.exception("source %s failed unexpectedly", spec.name)
                detail = f"unexpected {type(exc).__name__}: {exc}"
                outcome = SourceOutcome(spec.name, "failed", detail=detail)
            report.sources.append(outcome)
    return report


def _poll(
    settings: Settings,
    engine: Engine,
    client: SourceClient,
    spec: SourceSpec,
    clock: Callable[[], datetime],
) -> SourceOutcome:
    with read_scope(engine) as session:
        state = store.source_state(session, spec.name)
        # Validators answer for the URL they came from; a changed URL starts afresh.
        known = (
            Validators(state.etag, state.last_modified)
            if state is not None and state.url == spec.location
            else None
        )
    try:
        fetched = client.fetch(spec, known)
    except FetchError as exc:
        return _failed(engine, spec, clock(), "failed", exc.message)
    now = clock()
    if isinstance(fetched, NotModified):
        return _not_modified(engine, spec, fetched, now)
    try:
        parsed = parse_dump_bytes(fetched.body, reference=now.date(), format=spec.parser_format)
    except DumpError as exc:  # SourceFailure included: the service answered with an error
        return _quarantined(settings, engine, spec, fetched, now, str(exc))
    for warning in parsed.warnings:
        log.warning("%s: %s", spec.name, warning)
    sha256 = hashlib.sha256(fetched.body).hexdigest()
    dump_file = DumpFile(Path(_file_name(spec, fetched, now)), sha256, parsed)
    papers, new = len(parsed.papers), 0
    with session_scope(engine) as session:
        if not parsed.papers:
            status = "empty day"
        elif store.dump_by_sha256(session, sha256):
            status = "already ingested"
        else:
            new = store.store_dump(session, dump_file, now=now, source=spec.name)[0]
            ensure_trending(session, settings, now=now)  # the first upvotes offer it
            status = "stored"
        store.record_fetch_success(
            session,
            spec.name,
            url=spec.location,
            now=now,
            papers=papers,
            new=new,
            etag=fetched.validators.etag,
            last_modified=fetched.validators.last_modified,
        )
    log.info("%s: %s, %d papers, %d new", spec.name, status, papers, new)
    return SourceOutcome(spec.name, status, papers, new, "; ".join(parsed.warnings))


def _not_modified(
    engine: Engine, spec: SourceSpec, fetched: NotModified, now: datetime
) -> SourceOutcome:
    """A 304: a success with nothing to store (the validators kept, or renewed)."""
    with session_scope(engine) as session:
        store.record_fetch_success(
            session,
            spec.name,
            url=spec.location,
            now=now,
            papers=0,
            new=0,
            etag=fetched.validators.etag or None,  # a 304 may repeat them, or not
            last_modified=fetched.validators.last_modified or None,
        )
    log.info("%s: not modified", spec.name)
    return SourceOutcome(spec.name, "not modified")


def _failed(
    engine: Engine, spec: SourceSpec, now: datetime, status: str, reason: str
) -> SourceOutcome:
    log.warning("source %s failed: %s", spec.name, reason)
    with session_scope(engine) as session:
        store.record_fetch_failure(session, spec.name, url=spec.location, now=now, reason=reason)
    return SourceOutcome(spec.name, status, detail=reason)


def _quarantined(
    settings: Settings,
    engine: Engine,
    spec: SourceSpec,
    fetched: Fetched,
    now: datetime,
    reason: str,
) -> SourceOutcome:
    """Keep an unreadable answer in quarantine with its reason; the source failed."""
    folder = settings.folder("quarantine")
    name = _file_name(spec, fetched, now)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".digestd.", dir=folder) as incoming:
            body = Path(incoming) / name
            body.write_bytes(fetched.body)
            kept = quarantine_file(body, f"{spec.name} ({spec.location}): {reason}", folder=folder)
    except OSError as exc:
        log.error("%s: cannot keep the answer in %s: %s", spec.name, folder, exc)
        return _failed(engine, spec, now, "failed", f"{reason} (not kept: {exc.strerror})")
    return _failed(engine, spec, now, "quarantined", f"{reason} (kept as {kept.name})")


def _file_name(spec: SourceSpec, fetched: Fetched, now: datetime) -> str:
    """``<source>-<UTC time>.<ext>``: the name a fetched answer is stored or kept under."""
    suffix = _SUFFIXES.get(spec.format, "")
    if not suffix:
        content_type = fetched.content_type.lower()
        if "ndjson" in content_type or "jsonl" in content_type:
            suffix = ".jsonl"
        elif "json" in content_type:
            suffix = ".json"
        elif "xml" in content_type or "rss" in content_type or "atom" in content_type:
            suffix = ".xml"
        else:
            suffix = (Path(spec.path).suffix if spec.path else "") or ".txt"
    return f"{spec.name}-{now.strftime('%Y%m%dT%H%M%SZ')}{suffix}"
