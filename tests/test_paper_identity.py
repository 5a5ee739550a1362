"""One paper, one row: the same paper from a text dump, Hugging Face and the arXiv API is stored
once; a newer version revises it, is recorded, and goes out again only to those who asked."""

from __future__ import annotations

import asyncio
import dataclasses
import email
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from digestd import jobs, store
from digestd.config import Settings
from digestd.db import make_engine, migrate, session_scope
from digestd.ingest import DumpFile, ParsedDump, ParsedPaper
from digestd.models import Dump, Paper, PaperVersion, SentPaper
from tests.support.databases import engine_fixture  # noqa: F401  (the engine fixture)
from tests.support.outbox_site import (  # noqa: F401  (the server fixture)
    server_fixture,
    smtp_settings,
)
from tests.support.smtp_faults import FaultServer
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture, for the postgres runs)

T0 = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
TITLE = "Sparse Mixture Routers for Tiny Language Models"
ABSTRACT = "We route tokens through sparse experts. Tiny models gain a lot."
ID = "2606.01234"


_dumps = iter(range(10**6))


def put(
    engine: Engine, *papers: ParsedPaper, at: datetime = T0, source: str = ""
) -> store.StoredCounts:
    """Store ``papers`` as one response of ``source``."""
    number = next(_dumps)
    dump = DumpFile(
        Path(f"{source or 'dump'}-{number}.txt"),
        f"{number:064x}",
        ParsedDump(at.date(), tuple(papers)),
    )
    with session_scope(engine) as session:
        return store.store_dump(session, dump, now=at, source=source)


def papers(engine: Engine) -> list[Paper]:
    with session_scope(engine) as session:
        found = list(session.exec(select(Paper).order_by(col(Paper.id))).all())
        session.expunge_all()
    return found


def from_text_dump() -> ParsedPaper:
    return ParsedPaper(TITLE, ABSTRACT)


def from_hugging_face(upvotes: int = 7) -> ParsedPaper:
    return ParsedPaper(
        TITLE,
        ABSTRACT,
        arxiv_id=ID,
        authors=("Ada Løken", "Bo Chen"),
        published=date(2026, 6, 10),
        abs_url=f"https://arxiv.org/abs/{ID}",
        hf_url=f"https://huggingface.co/papers/{ID}",
        upvotes=upvotes,
    )


def from_arxiv_api(version: int = 1, **changes: object) -> ParsedPaper:
    paper = ParsedPaper(
        TITLE,
        ABSTRACT,
        arxiv_id=ID,
        version=version,
        doi="10.1234/SMR.2026",
        authors=("Ada Løken", "Bo Chen"),
        categories=("cs.CL", "cs.LG"),
        published=date(2026, 6, 10),
        updated=date(2026, 6, 10),
        comment="12 pages",
        abs_url=f"https://arxiv.org/abs/{ID}v{version}",
        pdf_url=f"https://arxiv.org/pdf/{ID}v{version}",
    )
    return dataclasses.replace(paper, **changes)  # type: ignore[arg-type]


def test_the_same_paper_from_a_dump_hugging_face_and_arxiv_is_one_row(engine: Engine) -> None:
    assert put(engine, from_text_dump()) == (1, 0, 0)
    assert put(engine, from_hugging_face(), source="hf") == (0, 1, 0)
    assert put(engine, from_arxiv_api(), source="arxiv") == (0, 1, 0)
    [paper] = papers(engine)
    assert paper.uid == f"arxiv:{ID}" and paper.arxiv_id == ID
    assert (paper.title, paper.abstract) == (TITLE, ABSTRACT)
    assert paper.authors == ["Ada Løken", "Bo Chen"]
    assert paper.categories == ["cs.CL", "cs.LG"]
    assert (paper.version, paper.doi, paper.comment) == (1, "10.1234/SMR.2026", "12 pages")
    assert paper.hf_url == f"https://huggingface.co/papers/{ID}"
    assert paper.abs_url == f"https://arxiv.org/abs/{ID}"  # the first one known stays
    assert paper.pdf_url == f"https://arxiv.org/pdf/{ID}v1"
    assert (paper.upvotes, paper.published, paper.source) == (7, date(2026, 6, 10), "")
    assert paper.revised_at is None
    with session_scope(engine) as session:
        versions = session.exec(select(PaperVersion.version, PaperVersion.source)).all()
    assert [tuple(v) for v in versions] == [(1, "arxiv")]


def test_an_id_first_then_the_text_dump_is_still_one_row(engine: Engine) -> None:
    assert put(engine, from_arxiv_api(), source="arxiv") == (1, 0, 0)
    assert put(engine, dataclasses.replace(from_text_dump(), title=TITLE.upper())) == (0, 1, 0)
    [paper] = papers(engine)
    assert paper.uid == f"arxiv:{ID}" and paper.source == "arxiv"


def test_a_doi_is_the_identity_without_an_arxiv_id(engine: Engine) -> None:
    journal = ParsedPaper("A Journal Title", "Text.", doi="10.5555/ABC")
    assert put(engine, journal) == (1, 0, 0)
    # The same DOI under another title (a journal's wording) is the same paper ...
    assert put(engine, dataclasses.replace(journal, title="Another Wording")) == (0, 1, 0)
    # ... and so is the preprint that names the DOI: it brings its arXiv id.
    preprint = ParsedPaper("Preprint Title", "Text.", arxiv_id="2601.00001", doi="10.5555/abc")
    assert put(engine, preprint) == (0, 1, 0)
    [paper] = papers(engine)
    assert (paper.uid, paper.doi, paper.title) == (
        "arxiv:2601.00001",
        "10.5555/ABC",
        "A Journal Title",
    )


def test_another_arxiv_id_with_the_same_title_is_another_paper(engine: Engine) -> None:
    put(engine, from_arxiv_api())
    other = dataclasses.replace(from_arxiv_api(), arxiv_id="2606.09999", doi=None)
    assert put(engine, other) == (1, 0, 0)
    assert [p.uid for p in papers(engine)] == [f"arxiv:{ID}", "arxiv:2606.09999"]


def test_an_old_style_id_is_an_identity_too(engine: Engine) -> None:
    old = ParsedPaper("Dark Matter Halos", "Text.", arxiv_id="astro-ph/0601001", version=1)
    assert put(engine, old) == (1, 0, 0)
    assert put(engine, dataclasses.replace(old, title="Dark matter haloes!")) == (0, 1, 0)
    assert [p.uid for p in papers(engine)] == ["arxiv:astro-ph/0601001"]


def test_a_new_version_revises_the_stored_paper_and_is_recorded(engine: Engine) -> None:
    put(engine, from_arxiv_api(), source="arxiv")
    [before] = papers(engine)
    later = T0 + timedelta(days=3)
    v2 = from_arxiv_api(
        2,
        title=TITLE + ", Revisited",
        abstract="A longer abstract.",
        categories=("cs.LG", "stat.ML"),
        authors=("Ada Løken", "Bo Chen", "Cy Diaz"),
    )
    assert put(engine, v2, at=later, source="arxiv") == (0, 1, 1)
    [after] = papers(engine)
    assert after.id == before.id and after.version == 2
    assert (after.title, after.abstract) == (TITLE + ", Revisited", "A longer abstract.")
    assert after.authors == ["Ada Løken", "Bo Chen", "Cy Diaz"]
    assert after.categories == ["cs.LG", "stat.ML", "cs.CL"]  # the new primary first
    assert after.revised_at is not None and store.aware(after.revised_at) == later
    assert after.first_seen == before.first_seen  # not a new paper
    assert after.updated_at > before.updated_at
    # An older version seen afterwards changes nothing.
    assert put(engine, from_arxiv_api(1), at=later + timedelta(hours=1)) == (0, 1, 0)
    [again] = papers(engine)
    assert (again.version, again.title) == (2, TITLE + ", Revisited")
    with session_scope(engine) as session:
        versions = session.exec(select(PaperVersion.version).order_by(PaperVersion.version))
        assert list(versions) == [1, 2]


def test_cross_listings_add_categories_and_upvotes_change_quietly(engine: Engine) -> None:
    put(engine, from_arxiv_api(categories=("cs.CL",)))
    put(engine, from_arxiv_api(categories=("cs.AI", "cs.CL")))
    [paper] = papers(engine)
    assert paper.categories == ["cs.CL", "cs.AI"]
    put(engine, from_hugging_face(upvotes=3))
    [voted] = papers(engine)
    put(engine, from_hugging_face(upvotes=40))
    [more] = papers(engine)
    assert more.upvotes == 40
    # Only the count changed: feed readers are not told the entry changed.
    assert more.updated_at == voted.updated_at


def test_within_one_response_a_title_only_paper_takes_the_id_of_its_twin(engine: Engine) -> None:
    assert put(engine, from_text_dump(), from_hugging_face()) == (1, 1, 0)
    [paper] = papers(engine)
    assert paper.uid == f"arxiv:{ID}" and paper.upvotes == 7
    with session_scope(engine) as session:
        assert session.exec(select(Dump.new_count)).one() == 1


# Sending: a revision goes out again only to a subscriber who asked for revised papers.


def _send(settings: Settings, engine: Engine, at: datetime) -> jobs.SendReport:
    return asyncio.run(jobs.run_send(settings, engine, now=at))


def _body(message: bytes) -> str:
    parsed = email.message_from_bytes(message, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("plain",))
    assert part is not None
    return part.get_content()


def test_a_v2_is_not_sent_again_unless_the_subscriber_wants_revised_papers(
    config_file: Path, server: FaultServer
) -> None:
    settings = smtp_settings(config_file, server)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    with session_scope(engine) as session:
        for address, revised in (("plain@example.org", False), ("revised@example.org", True)):
            store.add_subscriber(
                session,
                address,
                queries=['"sparse mixture"'],
                send_hour=0,
                revised_papers=revised,
                now=start - timedelta(days=1),
            )
    put(engine, from_arxiv_api(), at=start)
    first = _send(settings, engine, start + timedelta(hours=1))
    assert first.count("sent") == 2 and server.count == 2
    assert all(TITLE in _body(m.data) for m in server.messages)

    v2 = from_arxiv_api(2, title=TITLE + ", Revisited")
    put(engine, v2, at=start + timedelta(days=1))
    second = _send(settings, engine, start + timedelta(days=1, hours=1))
    assert [o.email for o in second.outcomes if o.status == "sent"] == ["revised@example.org"]
    assert second.nothing_new == 1
    assert server.count == 3
    [resent] = [m for m in server.messages[2:]]
    assert resent.rcpt_tos == ("revised@example.org",)
    assert TITLE + ", Revisited" in _body(resent.data)
    assert "new version (v2)" in _body(resent.data)
    assert all("new version" not in _body(m.data) for m in server.messages[:2])
    with session_scope(engine) as session:
        sent = session.exec(select(SentPaper.version).order_by(col(SentPaper.subscriber_id)))
        assert list(sent) == [1, 2]

    # Nothing new the day after: the v2 went out once.
    third = _send(settings, engine, start + timedelta(days=2, hours=1))
    assert third.count("sent") == 0 and server.count == 3
    engine.dispose()


def test_a_digest_says_which_author_and_category_matched(
    config_file: Path, server: FaultServer
) -> None:
    settings = smtp_settings(config_file, server)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    with session_scope(engine) as session:
        store.add_subscriber(
            session,
            "reader@example.org",
            queries=["author:loken AND cat:cs.CL"],
            send_hour=0,
            now=start - timedelta(days=1),
        )
    other = from_arxiv_api(arxiv_id="2606.05555", title="Another Paper", authors=("Bo Chen",))
    put(engine, from_arxiv_api(), other, at=start)
    report = _send(settings, engine, start + timedelta(hours=1))
    assert report.count("sent") == 1
    [message] = server.messages
    body = _body(message.data)
    assert TITLE in body and "Another Paper" not in body
    assert "author: Ada Løken" in body and "cat:cs.CL" in body
    assert "Ada Løken, Bo Chen" in body  # the byline
    assert f"https://arxiv.org/abs/{ID}v1" in body  # its own page, not a search
    engine.dispose()
