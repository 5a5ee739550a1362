"""What a run reports: its progress as it goes; for a send run, the outcome of each digest and
the run's totals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from digestd.errors import DigestError

Progress = Callable[[str, int], None]  # called with (item name, total items) as each item starts


@dataclass(frozen=True)
class DigestOutcome:
    """What happened to one subscriber's digest."""

    email: str
    status: str  # "sent", "retry", "failed", "dry-run"
    papers: int
    subject: str = ""
    detail: str = ""
    fault: str = ""  # a refused digest's: "recipient" (the address) or "sender" (ours)
    hint: str = ""  # what the operator can do about a failure on our side, if anything


@dataclass
class SendReport:
    """Outcomes of one send run."""

    outcomes: list[DigestOutcome] = field(default_factory=list)
    due: int = 0
    nothing_new: int = 0
    # (subscriber id, digest key, outbox row if one was open) of digests that found nothing new
    empty: list[tuple[int, str, int | None]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time spent in each stage
    resent: int = 0  # digests found "sending" after an interrupted run, and sent again
    paused: str = ""  # why the run stopped early, leaving the rest for the next run
    pause_hint: str = ""  # what the operator can do about it
    # Set when the database could not record the run's work (full, locked, unreachable).
    record_error: DigestError | None = None

    def count(self, status: str) -> int:
        """How many digests ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)
