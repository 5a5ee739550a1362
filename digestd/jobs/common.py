"""What the jobs share: the clock, the progress callback, matching queries, a run lock."""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from digestd.digest import (
    CandidatePaper,
)
from digestd.errors import BusyError
from digestd.ingest import paper_url
from digestd.match import (
    MatchResult,
    PaperIndex,
    PaperText,
    compile_profiles,
    index_papers,
    match_profiles,
)
from digestd.models import Paper

log = logging.getLogger("digestd")
K = TypeVar("K", bound=Hashable)
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
    queries: Mapping[K, str], papers: Iterable[Paper | CandidatePaper]
) -> MatchResult[K, int]:
    """Which of ``papers`` each query matches, and why (compiled once, indexed once).

    A stored query that no longer parses is logged and skipped."""
    profiles = compile_profiles(queries)
    for key, exc in profiles.errors.items():
        log.error("skipping query %r: %s", queries[key], exc)
    texts = {
        p.id: PaperText(p.title, p.abstract, tuple(p.authors), tuple(p.categories))
        for p in papers
        if p.id is not None
    }
    return match_profiles(profiles, _indexed(texts))


# The papers indexed by the latest runs, by their ids and texts (authors and categories
# included): the daemon's send job runs every few minutes over mostly the same papers, and the
# feeds job over its own set.
_RECENT_INDEXES: OrderedDict[tuple[tuple[int, PaperText], ...], PaperIndex[int]] = OrderedDict()
# The send job, the feeds job and the web application's query check each keep theirs.
_RECENT_INDEXES_KEPT = 3
_RECENT_INDEXES_LOCK = threading.Lock()


def _indexed(texts: dict[int, PaperText]) -> PaperIndex[int]:
    """``texts`` indexed, or the index of an earlier run over exactly the same papers.

    The web application's thread and the daemon's jobs share this cache, hence the lock."""
    key = tuple(texts.items())
    with _RECENT_INDEXES_LOCK:
        index = _RECENT_INDEXES.get(key)
        if index is not None:
            _RECENT_INDEXES.move_to_end(key)
            return index
    index = index_papers(texts)
    with _RECENT_INDEXES_LOCK:
        _RECENT_INDEXES[key] = index
        while len(_RECENT_INDEXES) > _RECENT_INDEXES_KEPT:
            _RECENT_INDEXES.popitem(last=False)
    return index


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
