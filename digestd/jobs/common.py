"""What the jobs share: the clock, the progress callback, compiling queries once, a run lock."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from digestd.digest import (
    CandidatePaper,
)
from digestd.errors import DigestError, QueryError
from digestd.ingest import paper_url
from digestd.match import CompiledQuery, compile_query
from digestd.models import Paper

log = logging.getLogger("digestd")
Progress = Callable[[str, int], None]  # called with (item name, total items) as each item starts


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


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
        stored_at=paper.first_seen,
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


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` for the block, or fail at once if another process
    (the daemon, another CLI call) holds it: two runs of ``what`` must never overlap."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DigestError(
                f"another {what} is running (lock {lock_file})", hint="try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
