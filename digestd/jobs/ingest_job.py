"""The ingest job: dump files in, papers stored whole or the file quarantined."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd import store
from digestd.config import Settings
from digestd.db import session_scope
from digestd.errors import DumpError
from digestd.ingest import dump_files, move_into, quarantine_file, read_dump_file
from digestd.jobs.common import Progress, log, utc_now


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
        """Papers stored for the first time."""
        return sum(f.new for f in self.files)

    @property
    def known(self) -> int:
        """Papers that were already stored."""
        return sum(f.known for f in self.files)

    @property
    def errors(self) -> int:
        """Files that could not be read or stored (they stay where they are)."""
        return sum(f.status == "error" for f in self.files)

    @property
    def quarantined(self) -> int:
        """Files moved to quarantine."""
        return sum(f.status == "quarantined" for f in self.files)


def run_ingest(
    settings: Settings,
    engine: Engine,
    paths: Sequence[Path] | None = None,
    *,
    reference: date | None = None,
    settle_seconds: float = 0.0,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest dump files (default: the inbox). Each file is stored whole in one transaction or
    quarantined with its reason; files from the inbox are moved to the processed folder, files
    named by the caller stay where they are (a copy of a bad one goes to quarantine).

    Inbox files changed less than ``settle_seconds`` ago are left for a later run: a dump being
    copied in must not be ingested half-written."""
    from_inbox = paths is None
    inbox = settings.folder("inbox")
    if from_inbox:
        inbox.mkdir(parents=True, exist_ok=True)
    files = dump_files([inbox] if from_inbox else list(paths or []))
    if from_inbox and settle_seconds > 0:
        settled_before = time.time() - settle_seconds
        files = [f for f in files if f.stat().st_mtime <= settled_before]
    today = reference or utc_now().date()
    report = IngestReport()
    for path in files:
        if progress:
            progress(path.name, len(files))
        try:
            outcome = _ingest_one(settings, engine, path, today, from_inbox)
        except (OSError, SQLAlchemyError) as exc:  # one file must not stop the others
            log.error("cannot ingest %s: %s", path, exc)
            outcome = FileOutcome(path, "error", detail=f"{type(exc).__name__}: {exc}")
        report.files.append(outcome)
    return report


def _ingest_one(
    settings: Settings, engine: Engine, path: Path, today: date, from_inbox: bool
) -> FileOutcome:
    try:
        dump_file = read_dump_file(path, reference=today)
    except DumpError as exc:
        # Files named on the command line are the operator's own: a copy goes to quarantine.
        target = quarantine_file(
            path,
            f"{path.name}: {exc}",
            folder=settings.folder("quarantine"),
            keep_original=not from_inbox,
        )
        log.warning("quarantined %s: %s (as %s)", path, exc, target)
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
