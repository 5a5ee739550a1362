"""`digestd ingest` over the project's fixture of every source format: each paper stored once
across formats, a v2 revises, error feeds are quarantined with nothing stored, an empty day is
a success with 0 papers, and --format overrides the detection."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import col, select

from digestd.config import load_settings
from digestd.db import make_engine, session_scope
from digestd.models import Dump, Paper
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
SOURCES = Path(__file__).parent / "fixtures" / "sources"
SHARED = "arxiv:2606.01234"


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init").code == 0
    return cli


def stored(config_file: Path) -> dict[str, Paper]:
    engine = make_engine(load_settings(config_file, environ={}).database_url)
    with session_scope(engine) as session:
        found = {p.uid: p for p in session.exec(select(Paper).order_by(col(Paper.id))).all()}
        session.expunge_all()
    engine.dispose()
    return found


def dumps(config_file: Path) -> list[tuple[str, str, int, int]]:
    engine = make_engine(load_settings(config_file, environ={}).database_url)
    with session_scope(engine) as session:
        rows = session.exec(
            select(Dump.file_name, Dump.format, Dump.paper_count, Dump.new_count).order_by(
                col(Dump.id)
            )
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_every_format_stores_each_paper_once(ready: Cli, config_file: Path) -> None:
    for name in ("daily-text.txt", "hf-daily.json", "arxiv-api-current.xml", "arxiv-rss.xml"):
        result = ready("ingest", str(SOURCES / name))
        assert result.code == 0, result.err
    result = ready("ingest", str(SOURCES / "papers.jsonl"))
    assert result.code == 0, result.err
    assert dumps(config_file) == [
        ("daily-text.txt", "text", 2, 2),
        ("hf-daily.json", "hf-json", 3, 1),  # two of them the dump's, now with their ids
        ("arxiv-api-current.xml", "arxiv-api", 3, 2),
        ("arxiv-rss.xml", "arxiv-rss", 4, 3),
        ("papers.jsonl", "jsonl", 4, 3),
    ]
    papers = stored(config_file)
    assert len(papers) == 11
    shared = papers[SHARED]
    # From the dump: the text; from Hugging Face: upvotes and its page; from arXiv: the rest.
    assert shared.title == "Sparse Mixture Routers for Tiny Language Models"
    assert shared.version == 2 and shared.hf_url.endswith("/papers/2606.01234")
    assert shared.upvotes is not None and shared.authors and shared.categories
    assert shared.abs_url == "https://arxiv.org/abs/2606.01234"
    assert "arxiv:2606.00412" in papers  # the dump's second paper took its id from HF
    assert not any(uid.startswith("t:") and "Agents" in p.title for uid, p in papers.items())
    assert "doi:10.48550/example.2026.77" in papers
    assert "arxiv:hep-th/9901001" in papers


def test_a_v2_revises_the_stored_paper(ready: Cli, config_file: Path) -> None:
    assert ready("ingest", str(SOURCES / "arxiv-api-current.xml")).code == 0
    before = stored(config_file)[SHARED]
    result = ready("ingest", str(SOURCES / "arxiv-api-v2.xml"))
    assert result.code == 0, result.err
    assert "0 new, 1 already known (1 revised by a new version)" in result.out
    after = stored(config_file)[SHARED]
    assert (before.version, after.version) == (1, 2)
    assert after.revised_at is not None and after.first_seen == before.first_seen
    assert len(stored(config_file)) == 3


@pytest.mark.parametrize(
    ("name", "reason"),
    [("arxiv-api-error.xml", "arXiv API error"), ("arxiv-rss-error.xml", "arXiv RSS error")],
)
def test_an_error_feed_is_quarantined_and_stores_nothing(
    ready: Cli, config_file: Path, tmp_path: Path, name: str, reason: str
) -> None:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCES / name, inbox / name)
    result = ready("ingest", str(inbox / name))
    assert result.code != 0
    assert "1 quarantined" in result.out
    quarantined = tmp_path / "data" / "quarantine" / name
    assert quarantined.exists()
    assert reason in (quarantined.parent / f"{name}.reason").read_text()
    assert stored(config_file) == {} and dumps(config_file) == []


@pytest.mark.parametrize("name", ["arxiv-api-empty.xml", "arxiv-rss-empty.xml", "hf-empty.json"])
def test_an_empty_day_is_a_success_with_no_papers(ready: Cli, config_file: Path, name: str) -> None:
    result = ready("ingest", str(SOURCES / name))
    assert result.code == 0, result.err
    assert "0 new, 0 already known, 0 quarantined" in result.out
    assert [(n, count) for n, _, count, _ in dumps(config_file)] == [(name, 0)]


def test_format_overrides_detection(ready: Cli, config_file: Path) -> None:
    wrong = ready("ingest", "--format", "jsonl", str(SOURCES / "hf-daily.json"))
    assert wrong.code != 0 and "1 quarantined" in wrong.out
    assert stored(config_file) == {}
    right = ready("ingest", "--format", "hf-json", str(SOURCES / "hf-daily.json"))
    assert right.code == 0 and "3 new" in right.out
    unknown = ready("ingest", "--format", "csv", str(SOURCES / "hf-daily.json"))
    assert unknown.code != 0
    assert unknown.err.count("\n") == 1 and "--format 'csv' must be one of" in unknown.err
