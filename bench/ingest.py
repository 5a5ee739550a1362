"""Ingest benchmark: papers per second parsed and stored, beside a raw sqlite3 executemany.

Ten daily dump files of 1,000 synthetic papers each (``--quick``: two of 200) are measured four
ways: parse alone (read, hash and parse every file), store alone (the parsed dumps stored on a
fresh database, one transaction per dump), parse + store (``run_ingest`` over the files on
another fresh database) and a re-ingest of the first dump's papers under a new date line (new
bytes, so it is stored again and every paper is a duplicate).

The baseline inserts exactly the rows ours stored (identities already computed) into a fresh
database's dump and paper tables with sqlite3 executemany in one transaction; for the re-ingest,
one dump row and an INSERT OR IGNORE of the first dump's papers into that filled table. Every
database is a temporary file made by ``make_engine`` + ``migrate`` and written through the
engine's own connection, so both sides run with the same pragmas (WAL, synchronous=NORMAL).
Each figure is the best of three runs (one with ``--quick``).

Run: ``python -m bench.ingest [--quick]``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bench.common import Report, peak_rss_mib, timed
from bench.common import is_quick as quick_mode
from bench.data import dump_text, synthetic_papers
from digestd.config import PathsSettings, Settings
from digestd.db import make_engine, migrate, session_scope
from digestd.ingest import DumpFile, read_dump_file
from digestd.jobs.ingest_job import run_ingest
from digestd.runtime import utc_now
from digestd.store import store_dump

FIRST_DAY = date(2024, 3, 1)
REFERENCE = date(2024, 12, 31)  # the year of the dumps' year-less date lines
DUMP_COLUMNS = ("id", "sha256", "file_name", "dump_date", "ingested_at", "paper_count", "new_count")
PAPER_COLUMNS = (
    "id",
    "uid",
    "title_key",
    "arxiv_id",
    "title",
    "abstract",
    "dump_id",
    "dump_date",
    "first_seen",
    "updated_at",
    "authors",
    "categories",
)


def write_dumps(folder: Path, *, dumps: int, per_dump: int) -> tuple[list[Path], Path]:
    """``dumps`` daily dump files of ``per_dump`` distinct papers, one day apart, and a file
    holding the first dump's papers again under a later date."""
    papers = synthetic_papers(dumps * per_dump)
    paths = []
    for number in range(dumps):
        day = FIRST_DAY + timedelta(days=number)
        path = folder / f"{day.isoformat()}.txt"
        chunk = papers[number * per_dump : (number + 1) * per_dump]
        path.write_text(dump_text(chunk, day), encoding="utf-8")
        paths.append(path)
    again = folder / "again" / "repeat.txt"
    again.parent.mkdir()
    again.write_text(dump_text(papers[:per_dump], FIRST_DAY + timedelta(days=dumps)), "utf-8")
    return paths, again


def fresh_engine(folder: Path, name: str) -> Engine:
    """A migrated SQLite database in a new file."""
    engine = make_engine(f"sqlite:///{folder / name}")
    migrate(engine)
    return engine


def store_all(engine: Engine, dumps: Sequence[DumpFile]) -> list[tuple[int, int]]:
    """Store each parsed dump in a transaction of its own; (new, known) per dump."""
    counts = []
    for dump_file in dumps:
        with session_scope(engine) as session:
            counts.append(tuple(store_dump(session, dump_file, now=utc_now())[:2]))
    return counts


def table_rows(engine: Engine, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Every row of ``table`` as stored, in id order."""
    with engine.connect() as conn:
        query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"
        return [tuple(row) for row in conn.exec_driver_sql(query)]


def raw_insert(engine: Engine, statements: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
    """Run each (SQL, rows) with sqlite3 executemany, all in one transaction, on the engine's
    own connection (its pragmas applied)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            cursor.executemany(sql, rows)
        cursor.execute("COMMIT")
    finally:
        raw.close()


def insert_sql(table: str, columns: Sequence[str], *, verb: str = "INSERT") -> str:
    """An INSERT of ``columns`` into ``table`` with one placeholder each."""
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@dataclass
class Stored:
    """What the store measurement leaves for the others: seconds per run and the stored rows."""

    seconds: list[float] = field(default_factory=list)
    duplicate_seconds: list[float] = field(default_factory=list)
    dump_rows: list[tuple[Any, ...]] = field(default_factory=list)
    paper_rows: list[tuple[Any, ...]] = field(default_factory=list)


def measure_parse(paths: Sequence[Path], runs: int) -> tuple[float, list[DumpFile]]:
    """Seconds of the fastest of ``runs`` parses of every file, and the parsed dumps."""
    seconds = []
    for _ in range(runs):
        with timed() as timing:
            parsed = [read_dump_file(p, reference=REFERENCE) for p in paths]
        seconds.append(timing.wall)
    return min(seconds), parsed


def measure_store(folder: Path, parsed: Sequence[DumpFile], repeat: DumpFile, runs: int) -> Stored:
    """Store the parsed dumps on fresh databases, then the all-duplicates one on top."""
    result = Stored()
    for run in range(runs):
        engine = fresh_engine(folder, f"store-{run}.db")
        with timed() as timing:
            store_all(engine, parsed)
        result.seconds.append(timing.wall)
        with timed() as timing:
            [(new, known)] = store_all(engine, [repeat])
        result.duplicate_seconds.append(timing.wall)
        assert (new, known) == (0, len(repeat.parsed.papers)), (new, known)
        result.dump_rows = table_rows(engine, "dump", DUMP_COLUMNS)[: len(parsed)]
        result.paper_rows = table_rows(engine, "paper", PAPER_COLUMNS)
        engine.dispose()
    return result


def measure_job(folder: Path, paths: Sequence[Path], runs: int, *, expected: int) -> float:
    """Seconds of the fastest of ``runs`` ``run_ingest`` calls over the files, each on a fresh
    database."""
    settings = Settings(paths=PathsSettings(data_dir=str(folder / "data")))
    seconds = []
    for run in range(runs):
        engine = fresh_engine(folder, f"job-{run}.db")
        with timed() as timing:
            report = run_ingest(settings, engine, paths, reference=REFERENCE)
        seconds.append(timing.wall)
        engine.dispose()
        assert report.new == expected and report.errors == report.quarantined == 0
    return min(seconds)


def measure_raw(folder: Path, stored: Stored, runs: int) -> tuple[float, float, int]:
    """Seconds of the fastest raw insert of every stored row and of the fastest INSERT OR
    IGNORE of the first dump's papers on top; the database's size in bytes."""
    dumps, papers = stored.dump_rows, stored.paper_rows
    first_dump = [row[1:] for row in papers if row[PAPER_COLUMNS.index("dump_id")] == dumps[0][0]]
    another_dump = (len(dumps) + 1, "0" * 64, "repeat.txt", *dumps[0][3:])
    seconds, duplicate_seconds = [], []
    for run in range(runs):
        engine = fresh_engine(folder, f"raw-{run}.db")
        with timed() as timing:
            raw_insert(
                engine,
                [
                    (insert_sql("dump", DUMP_COLUMNS), dumps),
                    (insert_sql("paper", PAPER_COLUMNS), papers),
                ],
            )
        seconds.append(timing.wall)
        with timed() as timing:
            raw_insert(
                engine,
                [
                    (insert_sql("dump", DUMP_COLUMNS), [another_dump]),
                    (insert_sql("paper", PAPER_COLUMNS[1:], verb="INSERT OR IGNORE"), first_dump),
                ],
            )
        duplicate_seconds.append(timing.wall)
        assert len(table_rows(engine, "paper", ("id",))) == len(papers)
        engine.dispose()
    return min(seconds), min(duplicate_seconds), (folder / "raw-0.db").stat().st_size


def main() -> None:
    """Run the ingest benchmark and print its table."""
    quick = quick_mode()
    dumps, per_dump, runs = (2, 200, 1) if quick else (10, 1000, 3)
    total = dumps * per_dump
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as temporary:
        folder = Path(temporary)
        paths, again = write_dumps(folder, dumps=dumps, per_dump=per_dump)
        text_bytes = sum(p.stat().st_size for p in paths)
        parse_seconds, parsed = measure_parse(paths, runs)
        assert sum(len(d.parsed.papers) for d in parsed) == total
        stored = measure_store(folder, parsed, read_dump_file(again, reference=REFERENCE), runs)
        kept = len(stored.paper_rows)  # a few synthetic titles fold alike: fewer than total
        job_seconds = measure_job(folder, paths, runs, expected=kept)
        raw_seconds, raw_duplicate_seconds, db_bytes = measure_raw(folder, stored, runs)

    raw_rate = kept / raw_seconds
    report = Report(f"ingest: {dumps} dumps of {per_dump:,} papers" + (" (quick)" if quick else ""))
    report.figure("parse alone (read, hash, parse)", f"{total / parse_seconds:,.0f} papers/s")
    for what, seconds in (
        (f"store alone ({dumps} transactions)", min(stored.seconds)),
        ("parse + store (run_ingest)", job_seconds),
    ):
        report.compare(what, total / seconds, raw_rate, unit="papers/s", higher_is_better=True)
    report.compare(
        "re-ingest a dump, all duplicates",
        per_dump / min(stored.duplicate_seconds),
        per_dump / raw_duplicate_seconds,
        unit="papers/s",
        higher_is_better=True,
    )
    report.note(
        f"sizes: {total:,} papers, {text_bytes / 2**20:.1f} MiB of dump text; {kept:,} stored"
        f" ({total - kept} alike by folded title), database {db_bytes / 2**20:.1f} MiB"
    )
    report.note(
        "baseline: the same rows by sqlite3 executemany in one transaction (INSERT OR IGNORE"
        " for the duplicates), same file and pragmas"
    )
    report.note(f"best of {runs} run(s); peak RSS {peak_rss_mib():.0f} MiB")
    report.print()


if __name__ == "__main__":
    main()
