"""What every benchmark shares: timers, peak memory, and one table of figures with ratios.

A figure is printed beside the baseline measured in the same run on the same data, and the
ratio says how many times better ours is (higher is better, whichever way the unit goes).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


@dataclass
class Timing:
    """Wall-clock and CPU seconds (this process) of one timed block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    """Time the block: wall-clock seconds and CPU seconds used by this process."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - wall
        timing.cpu = time.process_time() - cpu


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Report:
    """One benchmark's figures: rows of (what, ours, baseline, ratio) and notes under them."""

    title: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, what: str, value: str) -> None:
        """A figure with no baseline."""
        self.rows.append((what, value, "", ""))

    def compare(
        self, what: str, ours: float, baseline: float, *, unit: str, higher_is_better: bool
    ) -> float:
        """A figure beside its baseline; returns the ratio (how many times better ours is)."""
        if higher_is_better:
            ratio = ours / baseline if baseline else float("inf")
        else:
            ratio = baseline / ours if ours else float("inf")
        self.rows.append(
            (what, f"{_number(ours)} {unit}", f"{_number(baseline)} {unit}", f"{ratio:.1f}x")
        )
        return ratio

    def note(self, text: str) -> None:
        """A line printed under the table."""
        self.notes.append(text)

    def print(self) -> None:
        """Print the table and its notes."""
        table = Table(title=self.title, title_justify="left")
        for name in ("measure", "ours", "baseline", "ratio"):
            table.add_column(name, justify="left" if name == "measure" else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print(table)
        for text in self.notes:
            console.print(f"  {text}")
        console.print()


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def is_quick(argv: list[str] | None = None) -> bool:
    """Whether the benchmark was started with ``--quick`` (small sizes, a smoke run)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a != "--quick"]
    if unknown:
        raise SystemExit(f"unknown arguments {unknown} (only --quick is accepted)")
    return "--quick" in args
