"""``digestd papers``: the stored papers with their metadata, as a table and as JSON lines, on a
real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digestd import store
from digestd.cli import app
from digestd.cli.common import out
from digestd.config import load_settings
from digestd.db import make_engine, read_scope, session_scope
from digestd.models import Dump, Paper
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
STORED = datetime(2025, 3, 14, 6, tzinfo=UTC)


@pytest.fixture
def config(cli: Cli, config_file: Path) -> Path:
    """An initialised database holding three papers: one from the arXiv API with everything,
    one from Hugging Face without categories, one from a text dump with only its title."""
    assert cli("init").code == 0
    engine = make_engine(load_settings(config_file).database_url)
    with session_scope(engine) as session:
        dump = Dump(
            sha256="a" * 64,
            file_name="mar14.txt",
            dump_date=date(2025, 3, 14),
            ingested_at=STORED,
            paper_count=3,
            new_count=3,
        )
        session.add(dump)
        session.flush()
        assert dump.id is not None
        rows = [
            {
                "uid": "arxiv:2403.01234",
                "arxiv_id": "2403.01234",
                "version": 2,
                "doi": "10.1000/xyz",
                "title": "Language models for code " + "and more words " * 8,
                "authors": [
                    "Ada Lovelace",
                    "Alan Turing",
                    "Grace Hopper",
                    "Émilie du Châtelet",
                    "Mary Somerville",
                ],
                "categories": ["cs.CL", "cs.LG"],
                "published": date(2025, 3, 12),
                "abs_url": "https://arxiv.org/abs/2403.01234v2",
                "pdf_url": "https://arxiv.org/pdf/2403.01234v2",
                "source": "arxiv-api",
            },
            {
                "uid": "arxiv:2403.05555",
                "arxiv_id": "2403.05555",
                "title": "A trending paper",
                "authors": ["Zoë Ağaoğlu"],
                "published": date(2025, 3, 13),
                "hf_url": "https://huggingface.co/papers/2403.05555",
                "upvotes": 0,
                "source": "hf-daily",
            },
            {"uid": "t:a dumped paper", "title": "A dumped paper"},
        ]
        for number, fields in enumerate(rows):
            session.add(
                Paper(
                    title_key=str(fields["uid"]),
                    abstract="An abstract.",
                    dump_id=dump.id,
                    dump_date=date(2025, 3, 14),
                    first_seen=STORED,
                    updated_at=STORED + timedelta(microseconds=number),
                    **fields,
                )
            )
    engine.dispose()
    return config_file


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), "papers", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_table_lists_papers_newest_first_with_their_metadata(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(out, "width", 200)  # one table row per line
    text = run(config)
    assert text.splitlines()[0].strip() == "3 papers"
    # newest first by the paper's own date: the dump's (14th), then published (13th, 12th)
    assert text.index("A dumped paper") < text.index("A trending") < text.index("Language")
    for shown in ("2025-03-14", "2025-03-13", "2025-03-12", "2403.01234v2", "2403.05555", "—"):
        assert shown in text
    assert "cs.CL · cs.LG" in text and "hf-daily" in text
    assert "Ada Lovelace," in text and "et al." in text
    assert "more words and more words and more words and more words" not in text  # shortened


def test_json_lines_carry_every_field_and_only_the_known_links(config: Path) -> None:
    lines = [json.loads(line) for line in run(config, "--json").splitlines()]
    assert [paper["uid"] for paper in lines] == [
        "t:a dumped paper",
        "arxiv:2403.05555",
        "arxiv:2403.01234",
    ]
    dumped, trending, full = lines
    assert full == {
        "uid": "arxiv:2403.01234",
        "arxiv_id": "2403.01234",
        "version": 2,
        "title": "Language models for code " + "and more words " * 8,
        "authors": [
            "Ada Lovelace",
            "Alan Turing",
            "Grace Hopper",
            "Émilie du Châtelet",
            "Mary Somerville",
        ],
        "categories": ["cs.CL", "cs.LG"],
        "date": "2025-03-12",
        "source": "arxiv-api",
        "links": {
            "abs": "https://arxiv.org/abs/2403.01234v2",
            "pdf": "https://arxiv.org/pdf/2403.01234v2",
            "doi": "https://doi.org/10.1000/xyz",
        },
    }
    assert trending["links"] == {
        "abs": "https://arxiv.org/abs/2403.05555",
        "hf": "https://huggingface.co/papers/2403.05555",
    }
    assert trending["version"] is None and trending["categories"] == []
    assert dumped["arxiv_id"] is None and dumped["links"] == {} and dumped["source"] == ""
    assert dumped["date"] == "2025-03-14"


def test_since_and_source_narrow_the_list(config: Path) -> None:
    since = [
        json.loads(line)["uid"]
        for line in run(config, "--json", "--since", "2025-03-13").splitlines()
    ]
    assert since == ["t:a dumped paper", "arxiv:2403.05555"]
    hf = [
        json.loads(line)["uid"]
        for line in run(config, "--json", "--source", "hf-daily").splitlines()
    ]
    assert hf == ["arxiv:2403.05555"]
    assert run(config, "--source", "nowhere").strip() == "no stored papers match"
    engine = make_engine(load_settings(config).database_url)
    with read_scope(engine) as session:
        assert store.listed_papers(session, since=date(2025, 3, 15)) == []
    engine.dispose()


def test_a_bad_since_is_a_one_line_error_naming_the_option(cli: Cli, config: Path) -> None:
    result = cli("papers", "--since", "14/03/2025")
    assert result.code == 1
    assert result.err == "error: --since '14/03/2025' is not a date like 2026-03-14\n"
    assert result.out == ""
