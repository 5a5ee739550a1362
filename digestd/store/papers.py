"""Queries on dumps and papers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from digestd.ingest import DumpFile, paper_uid, title_key
from digestd.models import Dump, Paper


def dump_by_sha256(session: Session, sha256: str) -> Dump | None:
    """The dump already ingested with these exact bytes, if any."""
    return session.exec(select(Dump).where(Dump.sha256 == sha256)).first()


def store_dump(session: Session, dump_file: DumpFile, *, now: datetime) -> tuple[int, int]:
    """Store a parsed dump and its papers not seen before; returns (new, already known) counts."""
    parsed = dump_file.parsed
    dump = Dump(
        sha256=dump_file.sha256,
        file_name=dump_file.path.name,
        dump_date=parsed.dump_date,
        ingested_at=now,
        paper_count=len(parsed.papers),
        new_count=0,
    )
    session.add(dump)
    session.flush()
    assert dump.id is not None
    uids = {paper_uid(p): p for p in parsed.papers}
    keys = {title_key(p.title) for p in parsed.papers}
    known_uids = set(session.exec(select(Paper.uid).where(col(Paper.uid).in_(list(uids)))).all())
    known_keys = set(
        session.exec(select(Paper.title_key).where(col(Paper.title_key).in_(list(keys)))).all()
    )
    new = 0
    for uid, paper in uids.items():
        key = title_key(paper.title)
        if uid in known_uids or key in known_keys:
            continue
        known_uids.add(uid)
        known_keys.add(key)
        session.add(
            Paper(
                uid=uid,
                title_key=key,
                arxiv_id=paper.arxiv_id,
                title=paper.title,
                abstract=paper.abstract,
                dump_id=dump.id,
                dump_date=parsed.dump_date,
                first_seen=now,
            )
        )
        new += 1
    dump.new_count = new
    return new, len(parsed.papers) - new


def papers_since(session: Session, since: datetime) -> list[Paper]:
    """Papers first stored at or after ``since``, in the order they were stored."""
    return list(
        session.exec(select(Paper).where(Paper.first_seen >= since).order_by(col(Paper.id))).all()
    )


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
