"""Store: migrations from an empty database match the models; the SQLite file gets its pragmas;
dumps are stored whole, each paper once."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col, select

from digestd.config import PathsSettings, Settings
from digestd.db import check_schema, make_engine, migrate, read_scope, session_scope
from digestd.errors import DigestError
from digestd.ingest import DumpFile, ParsedDump, ParsedPaper, paper_uid, parse_dump_bytes, title_key
from digestd.jobs.ingest_job import run_ingest
from digestd.models import Dump, Paper
from digestd.store import papers as papers_module
from digestd.store import store_dump
from tests.support.databases import engine_fixture  # noqa: F401  (the engine fixture)
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture, for the postgres runs)


def test_migrations_from_empty_database_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with pytest.raises(DigestError, match="does not exist"):
        check_schema(engine)
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    check_schema(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'd.db'}", create=True)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000


def test_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(DigestError, match="cannot create the folder of database") as info:
        make_engine(f"sqlite:///{tmp_path / 'file.txt' / 'd.db'}", create=True)
    assert "\n" not in str(info.value)


# Deduplication. A paper is the same as a stored one when it has the same uid (its arXiv id, else
# its folded title) or the same folded title; these run on SQLite and, when a server is at hand,
# on PostgreSQL.

NOW = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
REFERENCE = date(2026, 11, 23)
ABSTRACT = "We study an old problem. The new method beats strong baselines."


def dump_of(*papers: tuple[str, str], day: int = 14) -> DumpFile:
    """A parsed dump of (title, abstract) pairs, as read from a file."""
    body = "\n\n".join(f"{title}\n\n{abstract}" for title, abstract in papers)
    data = f"new\n\nMar {day}\n\n{body}\n".encode()
    return DumpFile(
        Path(f"mar{day}.txt"),
        hashlib.sha256(data).hexdigest(),
        parse_dump_bytes(data, reference=REFERENCE),
    )


def store(engine: Engine, dump_file: DumpFile) -> tuple[int, int]:
    with session_scope(engine) as session:
        return store_dump(session, dump_file, now=NOW)[:2]


def stored(engine: Engine) -> list[tuple[str, str, str]]:
    """(uid, title, file name of the dump that brought it) of every paper, in stored order."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Paper.uid, Paper.title, Dump.file_name)
            .join(Dump, col(Dump.id) == col(Paper.dump_id))
            .order_by(col(Paper.id))
        ).all()
    return [tuple(row) for row in rows]


def test_a_dump_with_the_same_paper_twice_stores_it_once(engine: Engine) -> None:
    dump = dump_of(
        ("Graph Nets", ABSTRACT),
        ("Another Paper", ABSTRACT),
        ("GRAPH  nets!", ABSTRACT),  # the same folded title
        ("Graph Nets", ABSTRACT),  # the very same
    )
    assert store(engine, dump) == (2, 2)
    assert [title for _, title, _ in stored(engine)] == ["Graph Nets", "Another Paper"]


def test_a_dump_with_one_arxiv_id_twice_keeps_the_first_place_and_the_last_text(
    engine: Engine,
) -> None:
    dump = dump_of(
        ("Graph Nets", f"{ABSTRACT} See arXiv:2403.00001."),
        ("Another Paper", ABSTRACT),
        ("Graph Networks, Revised", f"{ABSTRACT} See arxiv.org/abs/2403.00001v2."),
    )
    assert store(engine, dump) == (2, 1)
    assert stored(engine) == [
        ("arxiv:2403.00001", "Graph Networks, Revised", "mar14.txt"),
        (f"t:{title_key('Another Paper')}", "Another Paper", "mar14.txt"),
    ]


def test_a_stored_arxiv_id_arriving_with_a_changed_title_is_known(engine: Engine) -> None:
    assert store(engine, dump_of(("Old Title", f"{ABSTRACT} arXiv:2403.00001"))) == (1, 0)
    later = dump_of(("A Wholly New Title", f"{ABSTRACT} arXiv:2403.00001v3"), day=15)
    assert store(engine, later) == (0, 1)
    assert stored(engine) == [("arxiv:2403.00001", "Old Title", "mar14.txt")]


def test_a_paper_matching_a_stored_folded_title_is_known(engine: Engine) -> None:
    assert store(engine, dump_of(("Naïve Bayes: Revisited", ABSTRACT))) == (1, 0)
    later = dump_of(
        ("naive bayes revisited", f"{ABSTRACT} arXiv:2403.00002"),  # a uid of its own
        ("NAIVE BAYES, REVISITED", ABSTRACT),
        ("Naive Bayes Revisited Again", ABSTRACT),
        day=15,
    )
    assert store(engine, later) == (1, 2)
    assert [(title, dump) for _, title, dump in stored(engine)] == [
        ("Naïve Bayes: Revisited", "mar14.txt"),
        ("Naive Bayes Revisited Again", "mar15.txt"),
    ]


def test_lookups_larger_than_one_query_find_every_known_paper(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(papers_module, "LOOKUP_CHUNK", 3)
    titles = [f"Paper Number {n}" for n in range(10)]
    assert store(engine, dump_of(*((t, ABSTRACT) for t in titles[:7]))) == (7, 0)
    later = dump_of(*((t.upper(), ABSTRACT) for t in titles), day=15)
    assert store(engine, later) == (3, 7)
    assert [title for _, title, _ in stored(engine)] == titles[:7] + [t.upper() for t in titles[7:]]


def write_dump(folder: Path, name: str, papers: list[tuple[str, str]], day: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(f"{title}\n\n{abstract}" for title, abstract in papers)
    path = folder / name
    path.write_text(f"Mar {day}\n\n{body}\n", encoding="utf-8")
    return path


def test_two_dumps_in_one_run(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(paths=PathsSettings(data_dir=str(tmp_path / "data")))
    inbox = settings.folder("inbox")
    write_dump(inbox, "a.txt", [("Paper A", ABSTRACT), ("Paper B", ABSTRACT)], day=14)
    write_dump(
        inbox,
        "b.txt",
        [("paper b", ABSTRACT), ("Paper C", f"{ABSTRACT} arXiv:2403.00003"), ("Paper A", "")],
        day=15,
    )
    report = run_ingest(settings, engine, reference=REFERENCE)
    assert [(f.path.name, f.status, f.new, f.known) for f in report.files] == [
        ("a.txt", "ingested", 2, 0),
        ("b.txt", "ingested", 1, 2),
    ]
    assert [(title, dump) for _, title, dump in stored(engine)] == [
        ("Paper A", "a.txt"),
        ("Paper B", "a.txt"),
        ("Paper C", "b.txt"),
    ]
    with session_scope(engine) as session:
        dumps = session.exec(select(Dump).order_by(col(Dump.id))).all()
        assert [(d.paper_count, d.new_count) for d in dumps] == [(2, 2), (3, 1)]
    assert sorted(p.name for p in settings.folder("processed").iterdir()) == ["a.txt", "b.txt"]


def test_a_file_that_fails_to_store_leaves_nothing_behind(tmp_path: Path) -> None:
    settings = Settings(paths=PathsSettings(data_dir=str(tmp_path / "data")))
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with engine.begin() as conn:  # the database refuses one paper, as a full disk might
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON paper WHEN NEW.title = 'Poison'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    inbox = settings.folder("inbox")
    write_dump(inbox, "a.txt", [("Paper A", ABSTRACT), ("Poison", ABSTRACT)], day=14)
    write_dump(inbox, "b.txt", [("Paper A", ABSTRACT), ("Paper B", ABSTRACT)], day=15)
    report = run_ingest(settings, engine, reference=REFERENCE)
    assert [(f.path.name, f.status, f.new, f.known) for f in report.files] == [
        ("a.txt", "error", 0, 0),
        ("b.txt", "ingested", 2, 0),
    ]
    assert "refused" in report.files[0].detail
    assert [(title, dump) for _, title, dump in stored(engine)] == [
        ("Paper A", "b.txt"),
        ("Paper B", "b.txt"),
    ]
    with session_scope(engine) as session:
        assert [d.file_name for d in session.exec(select(Dump)).all()] == ["b.txt"]
    assert [p.name for p in inbox.iterdir()] == ["a.txt"]  # left for the next run
    engine.dispose()


def reference_store(
    rows: list[list[str]], papers: tuple[ParsedPaper, ...], name: str
) -> tuple[int, int]:
    """What store_dump does, one paper at a time, on a list of [uid, title key, title, dump
    name] rows; returns its (new, known) counts. A paper is known by its uid; one without an
    arXiv id also by its folded title; one with an arXiv id is the paper known by its folded
    title alone, which takes its id."""
    uids = {paper_uid(p): p for p in papers}
    new = 0
    for uid, paper in uids.items():
        key = title_key(paper.title)
        if any(row[0] == uid for row in rows):
            continue
        same_title = [row for row in rows if row[1] == key]
        if paper.arxiv_id:
            untagged = [row for row in same_title if not row[0].startswith("arxiv:")]
            if untagged:
                untagged[0][0] = uid
                continue
        elif same_title:
            continue
        rows.append([uid, key, paper.title, name])
        new += 1
    return new, len(papers) - new


fuzzy_papers = st.builds(
    ParsedPaper,
    title=st.sampled_from(
        ["Graph Nets", "graph nets!", "Graph Nets 2", "Naïve Bayes", "naive bayes"]
    ),
    abstract=st.sampled_from(["One.", "Two."]),
    arxiv_id=st.sampled_from([None, None, "2403.00001", "2403.00002"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(fuzzy_papers, min_size=1, max_size=6), min_size=1, max_size=4))
@pytest.mark.slow
def test_store_dump_is_storing_one_paper_at_a_time(dumps: list[list[ParsedPaper]]) -> None:
    engine = make_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    expected: list[list[str]] = []
    for number, papers in enumerate(dumps):
        name = f"dump{number}.txt"
        parsed = ParsedDump(dump_date=date(2026, 3, 14), papers=tuple(papers))
        dump_file = DumpFile(Path(name), f"{number:064d}", parsed)
        assert store(engine, dump_file) == reference_store(expected, parsed.papers, name)
    with session_scope(engine) as session:
        rows = session.exec(
            select(Paper.uid, Paper.title_key, Paper.title, Dump.file_name)
            .join(Dump, col(Dump.id) == col(Paper.dump_id))
            .order_by(col(Paper.id))
        ).all()
    assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
    engine.dispose()


def test_a_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(engine)
    with session_scope(engine) as writer:
        writer.add(
            Dump(
                sha256="a" * 64,
                file_name="x.txt",
                dump_date=date(2026, 3, 14),
                ingested_at=datetime.now(UTC),
                paper_count=0,
                new_count=0,
            )
        )
        writer.flush()  # the write lock is held until the end of this block
        started = time.monotonic()
        with read_scope(engine) as reader:
            assert reader.exec(select(Dump)).all() == []  # sees only what was committed
        assert time.monotonic() - started < 1.0
    with read_scope(engine) as reader:
        assert len(reader.exec(select(Dump)).all()) == 1


def test_every_stored_paper_has_an_updated_instant_of_its_own(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(engine)
    now = datetime(2026, 3, 14, 7, tzinfo=UTC)
    for number in range(2):
        # Two dumps stored at the same instant (two nodes, or a clock that did not move).
        papers = tuple(ParsedPaper(f"Paper {number}-{i}", "Text.") for i in range(3))
        dump_file = DumpFile(
            Path(f"{number}.txt"), f"{number:064d}", ParsedDump(date(2026, 3, 14), papers)
        )
        with session_scope(engine) as session:
            store_dump(session, dump_file, now=now)
    with read_scope(engine) as session:
        stamps = [p.updated_at for p in session.exec(select(Paper).order_by(col(Paper.id))).all()]
    assert len(set(stamps)) == 6
    assert stamps == sorted(stamps)
    engine.dispose()


def test_a_title_with_o_slash_is_the_same_paper_as_its_ascii_spelling(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(engine)
    now = datetime(2026, 3, 14, 7, tzinfo=UTC)
    for number, title in enumerate(["Søren's Læsning Œuvre", "Soren's Laesning Oeuvre"]):
        dump_file = DumpFile(
            Path(f"{number}.txt"),
            f"{number:064d}",
            ParsedDump(date(2026, 3, 14), (ParsedPaper(title, "Text."),)),
        )
        with session_scope(engine) as session:
            assert store_dump(session, dump_file, now=now)[:2] == (
                (1, 0) if number == 0 else (0, 1)
            )
    engine.dispose()
