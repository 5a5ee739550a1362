"""Queries on dumps and papers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from digestd.ingest import DumpFile, ParsedPaper, paper_identity, title_key
from digestd.models import Dump, Paper, PaperVersion
from digestd.store.deliveries import aware
from digestd.store.paper_merge import (
    MERGE_COLUMNS,
    PaperChange,
    StoredRow,
    brings_more,
    find_stored,
    merge_change,
)

_TICK = timedelta(microseconds=1)
_PAPER = SQLModel.metadata.tables[Paper.__tablename__]


def dump_by_sha256(session: Session, sha256: str) -> Dump | None:
    """The dump already ingested with these exact bytes, if any."""
    return session.exec(select(Dump).where(Dump.sha256 == sha256)).first()


class StoredCounts(NamedTuple):
    """What storing a dump did: papers stored for the first time, papers already stored
    (``revised`` of them by a newer version)."""

    new: int
    known: int
    revised: int = 0


def store_dump(
    session: Session, dump_file: DumpFile, *, now: datetime, source: str = ""
) -> StoredCounts:
    """Store a parsed dump or response and its papers not seen before; papers already stored
    are completed or revised, and take the upvote count it states while they are recent (see
    store/paper_merge.py).

    A paper is already stored when a stored paper has its uid (its arXiv id, else its DOI,
    else its folded title) or, failing that, is the same paper by DOI or folded title. Within
    the dump, papers sharing a uid are stored once, in the first one's place with the last
    one's text; of papers sharing a folded title (and no arXiv id), the first is stored.

    Each new or visibly changed paper gets an instant of its own (``updated_at``, unique in the
    database), a microsecond apart, after every stored one: feed entries must never share an
    atom:updated. Where two ingests run at once (PostgreSQL; SQLite queues writers), the one
    that meets the other's papers or instants looks again and stores what is still new."""
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
        fresh, changes = _sort_out(session, latest, today=now.date())
        try:
            with session.begin_nested():
                instants = _instants(session, len(fresh) + sum(c.visible for c in changes), now)
                _insert_papers(
                    session,
                    fresh,
                    dump_id=dump.id,
                    dump_date=parsed.dump_date,
                    now=now,
                    instants=instants,
                    source=source,
                )
                _apply_changes(session, changes, now=now, instants=instants, source=source)
            break
        except IntegrityError:
            if attempt == _INSERT_TRIES - 1:
                raise
    dump.new_count = len(fresh)
    session.add(dump)
    return StoredCounts(
        len(fresh), len(parsed.papers) - len(fresh), sum(c.revised for c in changes)
    )


_INSERT_TRIES = 5
_Fresh = list[tuple[str, str, ParsedPaper]]
_MERGED = [getattr(Paper, name) for name in MERGE_COLUMNS]


def _sort_out(
    session: Session, latest: dict[str, tuple[str, ParsedPaper]], *, today: date
) -> tuple[_Fresh, list[PaperChange]]:
    """(uid, title key, paper) of the papers in ``latest`` that no stored paper is, and the
    changes the others make to the stored papers they are (upvotes refreshed while recent
    on ``today``)."""
    # A paper with nothing but a title and an abstract (a text dump's) changes no stored paper:
    # whether one is stored is all it needs, and the cheap lookups tell.
    rich = {uid: (key, p) for uid, (key, p) in latest.items() if brings_more(p)}
    plain = [(uid, key) for uid, (key, _) in latest.items() if uid not in rich]
    known_uids = _stored(session, col(Paper.uid), [uid for uid, _ in plain])
    known_keys = _stored(session, col(Paper.title_key), [key for _, key in plain])
    dois = [p.doi.lower() for _, p in rich.values() if p.doi]
    by_uid = {r.uid: r for r in _rows(session, col(Paper.uid), list(rich))}
    by_key: dict[str, list[StoredRow]] = {}
    for keyed in _rows(session, col(Paper.title_key), [key for key, _ in rich.values()]):
        by_key.setdefault(keyed.title_key, []).append(keyed)
    by_doi: dict[str, list[StoredRow]] = {}
    for with_doi in _rows(session, func.lower(Paper.doi), dois):
        by_doi.setdefault((with_doi.doi or "").lower(), []).append(with_doi)
    fresh: _Fresh = []
    changes: list[PaperChange] = []
    # Stored papers already met in this dump, with the uid they now have: one known by its
    # title that took an arXiv id is another paper's no longer.
    taken: dict[int, str] = {}
    fresh_uids: set[str] = set()
    untagged: dict[str, int] = {}  # title key -> place in ``fresh`` of a paper without arXiv id
    fresh_keys: set[str] = set()
    for uid, (key, paper) in latest.items():
        if uid not in rich and (uid in known_uids or key in known_keys):
            continue
        row = find_stored(paper, uid=uid, key=key, by_uid=by_uid, by_doi=by_doi, by_key=by_key)
        current = taken.get(row.id, row.uid) if row is not None else ""
        if paper.arxiv_id and current.startswith("arxiv:") and current != uid:
            row = None  # it took another arXiv id in this dump: this is another paper
        if row is not None:
            if row.id not in taken or not current.startswith("arxiv:"):
                change = merge_change(row, paper, uid=uid, today=today)
                taken[row.id] = change.values.get("uid", current)
                if change.values:
                    changes.append(change)
            continue
        if uid in fresh_uids:
            continue
        if paper.arxiv_id and key in untagged:
            # A paper of this dump known by its title only: it takes this one's id.
            place = untagged.pop(key)
            _, _, first = fresh[place]
            fresh_uids.add(uid)
            fresh[place] = (uid, key, replace(paper, title=first.title, abstract=first.abstract))
            continue
        if key in fresh_keys and not paper.arxiv_id:
            continue
        fresh_uids.add(uid)
        fresh_keys.add(key)
        if not paper.arxiv_id:
            untagged[key] = len(fresh)
        fresh.append((uid, key, paper))
    return fresh, changes


def _instants(session: Session, count: int, now: datetime) -> list[datetime]:
    """``count`` instants a microsecond apart, after every stored paper's."""
    if not count:
        return []
    newest = session.exec(select(func.max(Paper.updated_at))).one()
    first = max(now, aware(newest) + _TICK) if newest is not None else now
    return [first + number * _TICK for number in range(count)]


def _insert_papers(
    session: Session,
    fresh: _Fresh,
    *,
    dump_id: int,
    dump_date: date,
    now: datetime,
    instants: list[datetime],
    source: str,
) -> None:
    """Insert ``fresh`` papers, each at the next of ``instants``, and record their versions."""
    if not fresh:
        return
    # One executemany in the session's transaction, not an ORM object per paper.
    session.connection().execute(
        insert(_PAPER),
        [
            {
                "uid": uid,
                "title_key": key,
                "arxiv_id": paper.arxiv_id,
                "version": paper.version,
                "doi": paper.doi,
                "title": paper.title,
                "abstract": paper.abstract,
                "authors": list(paper.authors),
                "categories": list(paper.categories),
                "published": paper.published,
                "journal_ref": paper.journal_ref,
                "comment": paper.comment,
                "abs_url": paper.abs_url,
                "pdf_url": paper.pdf_url,
                "hf_url": paper.hf_url,
                "upvotes": paper.upvotes,
                "source": source,
                "dump_id": dump_id,
                "dump_date": dump_date,
                "first_seen": now,
                "updated_at": instants[number],
            }
            for number, (uid, key, paper) in enumerate(fresh)
        ],
    )
    versions = {uid: paper.version for uid, _, paper in fresh if paper.version is not None}
    if versions:
        ids = session.exec(select(Paper.uid, Paper.id).where(col(Paper.uid).in_(list(versions))))
        stored = [(pid, versions[uid]) for uid, pid in ids if pid is not None]
        _record_versions(session, stored, now, source)


def _apply_changes(
    session: Session,
    changes: list[PaperChange],
    *,
    now: datetime,
    instants: list[datetime],
    source: str,
) -> None:
    """Write each change to its stored paper; a visible one takes the next free instant
    (those after the new papers'), a revision is stamped ``revised_at``."""
    spare = iter(instants[len(instants) - sum(c.visible for c in changes) :])
    for change in changes:
        values = dict(change.values)
        if "title" in values:
            values["title_key"] = title_key(values["title"])
        if change.visible:
            values["updated_at"] = next(spare)
        if change.revised:
            values["revised_at"] = now
        session.connection().execute(
            update(_PAPER).where(_PAPER.c.id == change.paper_id).values(**values)
        )
    recorded = [(c.paper_id, c.new_version) for c in changes if c.new_version is not None]
    _record_versions(session, recorded, now, source)


def _record_versions(
    session: Session, versions: list[tuple[int, int]], now: datetime, source: str
) -> None:
    """Record that these (paper id, version) pairs were first seen now, from ``source``."""
    if versions:
        session.connection().execute(
            insert(SQLModel.metadata.tables[PaperVersion.__tablename__]),
            [
                {"paper_id": pid, "version": version, "seen_at": now, "source": source}
                for pid, version in versions
            ],
        )


LOOKUP_CHUNK = 500  # values per IN (...): well under every backend's bound-parameter limit


def _stored(session: Session, column: Any, values: list[str]) -> set[str]:
    """Those of ``values`` that some stored paper has in ``column``."""
    found: set[str] = set()
    for start in range(0, len(values), LOOKUP_CHUNK):
        chunk = values[start : start + LOOKUP_CHUNK]
        found.update(session.exec(select(column).where(column.in_(chunk))).all())
    return found


def _rows(session: Session, column: Any, values: list[str]) -> list[StoredRow]:
    """The stored papers whose ``column`` is one of ``values``, their merge columns only."""
    found: list[StoredRow] = []
    for start in range(0, len(values), LOOKUP_CHUNK):
        chunk = values[start : start + LOOKUP_CHUNK]
        rows = session.connection().execute(select(*_MERGED).where(column.in_(chunk)))
        found += [StoredRow.of(dict(row._mapping)) for row in rows]
    return found


def papers_since(session: Session, since: datetime) -> list[Paper]:
    """Papers first stored at or after ``since``, in the order they were stored."""
    return list(
        session.exec(select(Paper).where(Paper.first_seen >= since).order_by(col(Paper.id))).all()
    )


def papers_revised_since(session: Session, since: datetime) -> list[Paper]:
    """Papers a newer version revised at or after ``since``, in the order they were stored."""
    query = select(Paper).where(col(Paper.revised_at) >= since).order_by(col(Paper.id))
    return list(session.exec(query).all())


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
