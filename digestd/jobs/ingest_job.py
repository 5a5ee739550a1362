"""The ingest job: dump files in, papers stored whole or the file quarantined."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd import store
from digestd.config import Settings
from digestd.db import database_error, session_scope
from digestd.errors import BusyError, DigestError, DumpError, StorageError
from digestd.ingest import (
    dump_files,
    move_into,
    quarantine_file,
    read_dump_file,
    settle_remaining,
)
from digestd.jobs.common import log
from digestd.jobs.reports import Progress
from digestd.runtime import utc_now
from digestd.storage import disk_refuses_writes, os_reason, storage_error
from digestd.trending import ensure_trending

# How often a wait for inbox files to settle looks at them again, at most.
_SETTLE_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one dump file."""

    path: Path
    status: str  # "ingested", "already ingested", "quarantined", "vanished" or "error"
    new: int = 0
    known: int = 0
    detail: str = ""
    revised: int = 0  # of the known papers, those a newer version revised


@dataclass
class IngestReport:
    """Per-file outcomes of one ingest run and their totals."""

    files: list[FileOutcome] = field(default_factory=list)
    # Inbox files still being written when the run stopped waiting: the next run takes them.
    unsettled: list[Path] = field(default_factory=list)
    # Why the run stopped before the other files (the database cannot be written): they wait.
    stopped: DigestError | None = None

    @property
    def new(self) -> int:
        """Papers stored for the first time."""
        return sum(f.new for f in self.files)

    @property
    def known(self) -> int:
        """Papers that were already stored."""
        return sum(f.known for f in self.files)

    @property
    def revised(self) -> int:
        """Known papers a newer version revised."""
        return sum(f.revised for f in self.files)

    @property
    def errors(self) -> int:
        """Files that could not be read or stored (they stay where they are)."""
        return sum(f.status == "error" for f in self.files)

    @property
    def quarantined(self) -> int:
        """Files moved to quarantine."""
        return sum(f.status == "quarantined" for f in self.files)


def settled_files(
    folder: Path,
    *,
    settle_seconds: float,
    wait_seconds: float = 0.0,
    waiting: Callable[[str], None] | None = None,
) -> tuple[list[Path], list[Path]]:
    """The dump files in ``folder`` that have not changed for ``settle_seconds`` and those that
    have. With ``wait_seconds``, waits up to that long (looking again and again, so a file that
    keeps growing keeps it waiting) for the changing ones to settle too; ``waiting`` is told
    what it waits for."""
    deadline = time.monotonic() + wait_seconds
    while True:
        remaining: dict[Path, float] = {}
        for path in dump_files([folder]):
            left = settle_remaining(path, settle_seconds=settle_seconds)
            if left is not None:  # a file gone since the listing is no file of this run
                remaining[path] = left
        changing = [path for path, left in remaining.items() if left > 0]
        settled = [path for path, left in remaining.items() if left == 0]
        if not changing or time.monotonic() >= deadline:
            return settled, changing
        if waiting:
            first = changing[0].name if len(changing) == 1 else f"{len(changing)} files"
            waiting(f"waiting for {first} to settle (unchanged for {settle_seconds:g} s)")
        soonest = min(remaining[path] for path in changing)
        left = deadline - time.monotonic()
        time.sleep(max(0.0, min(max(soonest, 0.05), _SETTLE_POLL_SECONDS, left)))


def run_ingest(
    settings: Settings,
    engine: Engine,
    paths: Sequence[Path] | None = None,
    *,
    reference: date | None = None,
    settle_seconds: float = 0.0,
    settle_wait_seconds: float = 0.0,
    waiting: Callable[[str], None] | None = None,
    progress: Progress | None = None,
    format: str | None = None,
) -> IngestReport:
    """Ingest dump files (default: the inbox). Each file is stored whole in one transaction or
    quarantined with its reason; files from the inbox are moved to the processed folder, files
    named by the caller stay where they are (a copy of a bad one goes to quarantine).

    Inbox files changed less than ``settle_seconds`` ago are not taken: a dump being copied in
    must not be ingested half-written. With ``settle_wait_seconds`` the run waits that long at
    most for them (see ``settled_files``); those still changing are left for a later run. Files
    named by the caller are taken at once. Each file's format is detected from its content
    unless ``format`` names it (see digestd.ingest.FORMATS)."""
    from_inbox = paths is None
    report = IngestReport()
    if from_inbox:
        files, report.unsettled = _inbox_files(
            settings,
            settle_seconds=settle_seconds,
            wait_seconds=settle_wait_seconds,
            waiting=waiting,
        )
    else:
        files = dump_files(list(paths or []))
    today = reference or utc_now().date()
    for path in files:
        if progress:
            progress(path.name, len(files))
        outcome, report.stopped = _ingest_guarded(settings, engine, path, today, from_inbox, format)
        report.files.append(outcome)
        if report.stopped:
            break
    return report


def _ingest_guarded(
    settings: Settings,
    engine: Engine,
    path: Path,
    today: date,
    from_inbox: bool,
    format: str | None,
) -> tuple[FileOutcome, DigestError | None]:
    """Ingest one file; what happened to it, and why the run must stop if it must (the
    database or the disk refuses writes: every other file would fail the same way, so they
    wait for the next run and the caller says why in one line)."""
    try:
        return _ingest_one(settings, engine, path, today, from_inbox, format), None
    except SQLAlchemyError as exc:
        error = database_error(exc, url=engine.url)
        outcome = FileOutcome(path, "error", detail=str(error))
        if isinstance(error, StorageError | BusyError):
            return outcome, error
        log.error("cannot ingest %s: %s", path, error)
        return outcome, None
    except OSError as exc:
        stored = storage_error(exc)
        if stored is not None and disk_refuses_writes(exc):
            # A full or read-only disk under the quarantine or processed folder.
            return FileOutcome(path, "error", detail=str(stored)), stored
        problem = stored or f"{exc.filename or path}: {os_reason(exc)}"
        log.error("cannot ingest %s: %s", path, problem)  # one file must not stop the others
        return FileOutcome(path, "error", detail=str(problem)), None


def _inbox_files(
    settings: Settings,
    *,
    settle_seconds: float,
    wait_seconds: float,
    waiting: Callable[[str], None] | None,
) -> tuple[list[Path], list[Path]]:
    """The inbox's settled files and those still being written (see ``settled_files``)."""
    inbox = settings.folder("inbox")
    inbox.mkdir(parents=True, exist_ok=True)
    return settled_files(
        inbox, settle_seconds=settle_seconds, wait_seconds=wait_seconds, waiting=waiting
    )


def _ingest_one(
    settings: Settings,
    engine: Engine,
    path: Path,
    today: date,
    from_inbox: bool,
    format: str | None,
) -> FileOutcome:
    try:
        dump_file = read_dump_file(path, reference=today, format=format)
    except FileNotFoundError:
        return _vanished(path, "before it could be read")
    except DumpError as exc:
        # Files named on the command line are the operator's own: a copy goes to quarantine.
        try:
            target = quarantine_file(
                path,
                f"{path.name}: {exc}",
                folder=settings.folder("quarantine"),
                keep_original=not from_inbox,
            )
        except FileNotFoundError:
            if path.exists():
                raise  # it is the quarantine folder that is missing a part
            return _vanished(path, "before it could be quarantined")
        log.warning("quarantined %s: %s (as %s)", path, exc, target)
        return FileOutcome(path, "quarantined", detail=str(exc))
    for warning in dump_file.parsed.warnings:
        log.warning("%s: %s", path, warning)
    with session_scope(engine) as session:
        if store.dump_by_sha256(session, dump_file.sha256):
            outcome = FileOutcome(path, "already ingested", known=len(dump_file.parsed.papers))
        else:
            new, known, revised = store.store_dump(session, dump_file, now=utc_now())
            ensure_trending(session, settings, now=utc_now())  # the first upvotes offer it
            outcome = FileOutcome(
                path,
                "ingested",
                new=new,
                known=known,
                revised=revised,
                detail="; ".join(dump_file.parsed.warnings),
            )
    if from_inbox:
        try:
            move_into(path, settings.folder("processed"))
        except FileNotFoundError:
            if path.exists():
                raise
            log.warning("%s vanished before it could be moved to processed/ (it is stored)", path)
    log.info(
        "%s: %s, %d new, %d already known", path.name, outcome.status, outcome.new, outcome.known
    )
    return outcome


def _vanished(path: Path, when: str) -> FileOutcome:
    """A file another process moved or deleted since it was listed: skipped, not a bad file."""
    log.warning("skipped %s: it vanished %s (moved or deleted by another process)", path, when)
    return FileOutcome(path, "vanished", detail=f"vanished {when}")
