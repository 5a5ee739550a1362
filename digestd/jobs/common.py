"""What the jobs share: matching queries over papers, timing a stage, the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from digestd.digest import CandidatePaper
from digestd.match import (
    MatchCache,
    MatchResult,
    PaperText,
    compile_profiles,
    match_profiles,
)
from digestd.models import Paper

log = logging.getLogger("digestd")
K = TypeVar("K", bound=Hashable)


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
        p.id: PaperText(
            p.title, p.abstract, tuple(p.authors), tuple(p.categories), p.upvotes, p.dump_date
        )
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
