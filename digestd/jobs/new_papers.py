"""How many of a window's candidate papers were stored since a subscriber's window began: the
"N new papers" a digest mentions. One sorted list per send run answers every subscriber by
bisection, however many are due."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from digestd.digest import CandidatePaper
from digestd.store import aware


@dataclass(frozen=True)
class StoredTimes:
    """When each candidate paper was stored, sorted (as aware UTC times)."""

    times: tuple[datetime, ...]

    @classmethod
    def of(cls, papers: Iterable[CandidatePaper]) -> StoredTimes:
        """The stored times of ``papers``."""
        return cls(tuple(sorted(aware(paper.stored_at) for paper in papers)))

    def count_since(self, since: datetime) -> int:
        """How many of the papers were stored at or after ``since``."""
        return len(self.times) - bisect_left(self.times, aware(since))
