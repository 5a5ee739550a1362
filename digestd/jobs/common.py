"""What the jobs share: the progress callback, matching queries, a run lock."""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from digestd.digest import (
    CandidatePaper,
)
from digestd.errors import BusyError
from digestd.ingest import paper_url
from digestd.match import (
    MatchCache,
    MatchResult,
    PaperText,
    compile_profiles,
    match_profiles,
)
from digestd.models import Paper
from digestd.runtime import utc_now as utc_now  # the clock lives with the runtime

log = logging.getLogger("digestd")
K = TypeVar("K", bound=Hashable)
Progress = Callable[[str, int], None]  # called with (item name, total items) as each item starts


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
    )


def match_queries(
    queries: Mapping[K, str],
    papers: Iterable[Paper | CandidatePaper],
    *,
    cache: MatchCache | None = None,
) -> MatchResult[K, int]:
    """Which of ``papers`` each query matches, and why (compiled once, indexed once).

    ``cache`` (the runtime's) keeps the compiled queries and the index for the next run over
    the same papers; without one, both are made for this call. A stored query that no longer
    parses is logged and skipped."""
    cache = cache if cache is not None else MatchCache()
    profiles = compile_profiles(queries, catalog=cache.catalog())
    for key, exc in profiles.errors.items():
        log.error("skipping query %r: %s", queries[key], exc)
    texts = {
        p.id: PaperText(p.title, p.abstract, tuple(p.authors), tuple(p.categories))
        for p in papers
        if p.id is not None
    }
    return match_profiles(profiles, cache.index(texts))


@contextmanager
def stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` for the block, or fail at once if another process
    (the daemon, another CLI call) holds it: two runs of ``what`` must never overlap."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"another {what} is running (lock {lock_file})", hint="try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
