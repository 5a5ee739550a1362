"""Queries on dumps and papers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import func, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import Session, SQLModel, col, select

from digestd.ingest import DumpFile, ParsedPaper, paper_identity
from digestd.models import Dump, Paper
from digestd.store.deliveries import aware

_TICK = timedelta(microseconds=1)


def dump_by_sha256(session: Session, sha256: str) -> Dump | None:
    """The dump already ingested with these exact bytes, if any."""
    return session.exec(select(Dump).where(Dump.sha256 == sha256)).first()


def store_dump(
    session: Session, dump_file: DumpFile, *, now: datetime, source: str = ""
) -> tuple[int, int]:
    """Store a parsed dump and its papers not seen before; returns (new, already known) counts.

    A paper is known when a stored paper has its uid (its arXiv id, else its folded title) or
    its folded title. Within the dump, papers sharing a uid are stored once, in the first one's
    place with the last one's text; of papers sharing a folded title, the first is stored.

    Each new paper gets an instant of its own (``updated_at``, unique in the database), a
    microsecond apart, after every stored one: feed entries must never share an atom:updated.
    Where two ingests run at once (PostgreSQL; SQLite queues writers), the one that meets the
    other's papers or instants looks again and stores what is still new."""
    parsed = dump_file.parsed
    latest: dict[str, tuple[str, ParsedPaper]] = {}
    for paper in parsed.papers:
        uid, key = paper_identity(paper)
        latest[uid] = (key, paper)
    dump = Dump(
        sha256=dump_file.sha256,
        file_name=dump_file.path.name,
        dump_date=parsed.dump_date,
        ingested_at=now,
        paper_count=len(parsed.papers),
        new_count=0,
        source=source,
        format=parsed.format,
    )
    session.add(dump)
    session.flush()
    assert dump.id is not None
    for attempt in range(_INSERT_TRIES):
        fresh = _new_papers(session, latest)
        try:
            with session.begin_nested():
                _insert_papers(session, fresh, dump_id=dump.id, dump_date=parsed.dump_date, now=now)
            break
        except IntegrityError:
            if attempt == _INSERT_TRIES - 1:
                raise
    dump.new_count = len(fresh)
    session.add(dump)
    return len(fresh), len(parsed.papers) - len(fresh)


_INSERT_TRIES = 5
_Fresh = list[tuple[str, str, ParsedPaper]]


def _new_papers(session: Session, latest: dict[str, tuple[str, ParsedPaper]]) -> _Fresh:
    """(uid, title key, paper) of the papers in ``latest`` that no stored paper is."""
    known_uids = _stored(session, col(Paper.uid), list(latest))
    known_keys = _stored(session, col(Paper.title_key), [key for key, _ in latest.values()])
    fresh: _Fresh = []
    for uid, (key, paper) in latest.items():
        if uid in known_uids or key in known_keys:
            continue
        known_uids.add(uid)
        known_keys.add(key)
        fresh.append((uid, key, paper))
    return fresh


def _insert_papers(
    session: Session, fresh: _Fresh, *, dump_id: int, dump_date: date, now: datetime
) -> None:
    """Insert ``fresh`` papers, each at the next free instant after every stored one."""
    if not fresh:
        return
    newest = session.exec(select(func.max(Paper.updated_at))).one()
    first = max(now, aware(newest) + _TICK) if newest is not None else now
    # One executemany in the session's transaction, not an ORM object per paper.
    session.connection().execute(
        insert(SQLModel.metadata.tables[Paper.__tablename__]),
        [
            {
                "uid": uid,
                "title_key": key,
                "arxiv_id": paper.arxiv_id,
                "title": paper.title,
                "abstract": paper.abstract,
                "authors": list(paper.authors),
                "categories": list(paper.categories),
                "dump_id": dump_id,
                "dump_date": dump_date,
                "first_seen": now,
                "updated_at": first + number * _TICK,
            }
            for number, (uid, key, paper) in enumerate(fresh)
        ],
    )


LOOKUP_CHUNK = 500  # values per IN (...): well under every backend's bound-parameter limit


def _stored(session: Session, column: Mapped[str], values: list[str]) -> set[str]:
    """Those of ``values`` that some stored paper has in ``column``."""
    found: set[str] = set()
    for start in range(0, len(values), LOOKUP_CHUNK):
        chunk = values[start : start + LOOKUP_CHUNK]
        found.update(session.exec(select(column).where(column.in_(chunk))).all())
    return found


def papers_since(session: Session, since: datetime) -> list[Paper]:
    """Papers first stored at or after ``since``, in the order they were stored."""
    return list(
        session.exec(select(Paper).where(Paper.first_seen >= since).order_by(col(Paper.id))).all()
    )


def papers_by_ids(session: Session, ids: Iterable[int]) -> list[Paper]:
    """The papers with these ids (those that still exist), in the order they were stored."""
    wanted = sorted(set(ids))
    found: list[Paper] = []
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start : start + 500]
        found += session.exec(select(Paper).where(col(Paper.id).in_(chunk))).all()
    return sorted(found, key=lambda paper: paper.id or 0)


def all_papers(session: Session, *, since: datetime | None = None) -> list[Paper]:
    """Every stored paper (or those stored since ``since``), newest dump first, each dump in
    its own order."""
    query = select(Paper).order_by(col(Paper.first_seen).desc(), col(Paper.id))
    if since is not None:
        query = query.where(Paper.first_seen >= since)
    return list(session.exec(query).all())


def paper_count(session: Session) -> int:
    """How many papers are stored."""
    return session.exec(select(func.count()).select_from(Paper)).one()


def papers_of_last_days(session: Session, days: int) -> list[Paper]:
    """The papers of the newest ``days`` days of dumps (by dump date, ending at the newest
    stored one), oldest day first, each day in the order it was stored."""
    newest = session.exec(select(func.max(Paper.dump_date))).one()
    if newest is None:
        return []
    first = newest - timedelta(days=days - 1)
    query = (
        select(Paper).where(Paper.dump_date >= first).order_by(col(Paper.dump_date), col(Paper.id))
    )
    return list(session.exec(query).all())
