"""Upvotes: the ``upvotes:`` clause of the query language (engine, reference evaluator, labels,
scores, the backtest) and upvote counts refreshed while a paper is recent, on real databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from digestd import store
from digestd.config import load_settings
from digestd.db import make_engine, session_scope
from digestd.errors import QueryError
from digestd.ingest import DumpFile, ParsedDump, ParsedPaper
from digestd.match import PaperText, compile_query, hit_labels
from digestd.models import Paper
from digestd.store.paper_merge import UPVOTES_REFRESH_DAYS
from tests.conftest import CliResult
from tests.support.databases import engine_fixture  # noqa: F401  (the engine fixture)
from tests.support.matching import engine_match_all
from tests.support.reference_match import analyze_paper, match_papers
from tests.support.web_pages import add_papers
from tests.support.web_server import (
    WebSite,
    web_site_fixture,  # noqa: F401  (the web_site fixture)
)
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture, for the postgres runs)

DAY = date(2026, 6, 12)
# Papers 0..4: 0, 5, 10, 11 upvotes and one whose source does not count them.
PAPERS = {
    number: PaperText(f"Paper {number}", "graph models", (), ("cs.CL",), upvotes, DAY)
    for number, upvotes in enumerate([0, 5, 10, 11, None])
}


def matched(query: str, papers: dict[int, PaperText] = PAPERS) -> list[int]:
    """The papers ``query`` matches, through the engine, checked against the reference."""
    found = engine_match_all({"q": query}, papers).get("q", {})
    analyzed = {key: analyze_paper(*paper) for key, paper in papers.items()}
    assert found == match_papers({"q": compile_query(query)}, analyzed).get("q", {})
    return sorted(found)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("upvotes:>=10", [2, 3]),
        ("upvotes:>10", [3]),
        ("upvotes:<=10", [0, 1, 2]),
        ("upvotes:<10", [0, 1]),
        ("upvotes:10", [2, 3]),  # a bare number means "at least"
        ("upvotes:>=0", [0, 1, 2, 3]),
        ("upvotes:<0", []),
        ("upvotes:top2", [2, 3]),
        ("Upvotes:TOP1", [3]),
    ],
)
def test_each_comparison_holds_on_its_side_of_the_bound(query: str, expected: list[int]) -> None:
    assert matched(query) == expected


def test_a_paper_without_upvotes_passes_no_test_not_even_less_than() -> None:
    for query in ("upvotes:<1000", "upvotes:>=0", "upvotes:top100", "graph upvotes:<=99"):
        assert 4 not in matched(query), query
    assert 4 in matched("graph NOT upvotes:>=1")  # the negation of a failed test holds


def test_upvotes_combine_with_other_clauses() -> None:
    papers = {**PAPERS, 5: PaperText("Paper 5", "graph", (), ("hep-th",), 50, DAY)}
    assert matched("cat:cs.CL upvotes:>=10", papers) == [2, 3]
    assert matched("(cat:hep-th OR upvotes:<1) graph", papers) == [0, 5]
    assert matched("cat:cs.CL -upvotes:>=5", papers) == [0, 4]
    assert matched("upvotes:>=5 AND upvotes:<=10", papers) == [1, 2]


def test_top_ranks_each_day_on_its_own_ties_to_the_lower_id() -> None:
    other = DAY - timedelta(days=1)
    papers = {
        7: PaperText("a", "", upvotes=9, day=DAY),
        3: PaperText("b", "", upvotes=9, day=DAY),
        5: PaperText("c", "", upvotes=20, day=DAY),
        1: PaperText("d", "", upvotes=1, day=other),
        2: PaperText("e", "", upvotes=0, day=other),
        4: PaperText("f", "", upvotes=None, day=other),
    }
    assert matched("upvotes:top2", papers) == [1, 2, 3, 5]  # 7 ties with 3 and loses
    assert matched("upvotes:top1", papers) == [1, 5]
    assert matched("upvotes:top2 upvotes:>=1", papers) == [1, 3, 5]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("upvotes:", "upvotes: takes >=, >, <=, < or top and a whole number"),
        ("upvotes:>=ten", "upvotes: takes >=, >, <=, < or top"),
        ("upvotes:>=-3", "upvotes: takes"),
        ("upvotes:=>3", "upvotes: takes"),
        ("upvotes:2.5", "upvotes: takes"),
        ("upvotes:top0", "upvotes:top needs a number of papers above 0"),
        ("upvotes:(>=3)", "upvotes: applies to one number, not a group"),
        ("title:(upvotes:>=3)", "'upvotes:' inside 'title:' can never match"),
        ("title:upvotes:>=3", "a term takes one field prefix"),
        ("NOT upvotes:>=10", "query has no positive term"),
        ("-upvotes:>=10", "query has no positive term"),
    ],
)
def test_bad_upvote_clauses_are_one_line_errors_naming_them(query: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_query(query)
    assert reason in caught.value.reason
    assert "\n" not in str(caught.value)


def test_labels_and_scores_say_what_an_upvote_test_is_without_outranking_words() -> None:
    papers = {
        1: PaperText("graph networks", "", (), ("cs.CL",), 50, DAY),
        2: PaperText("graph networks", "", (), ("cs.CL",), 2, DAY),
        3: PaperText("vision", "graph", (), ("cs.CL",), 90, DAY),
    }
    found = engine_match_all({"q": "graph OR upvotes:>=10", "t": "upvotes:top1"}, papers)
    popular, plain, abstract_only = found["q"][1], found["q"][2], found["q"][3]
    assert popular.score == plain.score + 0.5  # what a category hit adds, no more
    assert abstract_only.score < plain.score  # a title word still outranks popularity
    assert hit_labels(popular.hits) == ("graph", "upvotes ≥ 10")
    assert hit_labels(found["t"][3].hits) == ("upvotes:top1",)
    below = engine_match_all({"q": "upvotes:<3 graph"}, papers)["q"][2]
    assert hit_labels(below.hits) == ("graph", "upvotes < 3")


# -- the backtest -------------------------------------------------------------------------------

Cli = Callable[..., CliResult]
NOW = datetime(2026, 6, 12, 8, tzinfo=UTC)
_dumps = iter(range(10**6))


def put(engine: Engine, *papers: ParsedPaper, day: date = DAY, at: datetime = NOW) -> None:
    """Store ``papers`` as one Hugging Face response of ``day``, fetched at ``at``."""
    number = next(_dumps)
    dump = DumpFile(Path(f"hf-{number}.json"), f"{number:064x}", ParsedDump(day, tuple(papers)))
    with session_scope(engine) as session:
        store.store_dump(session, dump, now=at, source="hf")


def hf_paper(number: int, upvotes: int | None, title: str = "") -> ParsedPaper:
    arxiv_id = f"2606.{number:05d}"
    return ParsedPaper(
        title or f"Paper number {number}",
        "We study graph models.",
        arxiv_id=arxiv_id,
        hf_url=f"https://huggingface.co/papers/{arxiv_id}",
        upvotes=upvotes,
    )


def test_the_backtest_reads_the_stored_upvotes(cli: Cli, config_file: Path) -> None:
    assert cli("init").code == 0
    engine = make_engine(load_settings(config_file).database_url)
    put(engine, hf_paper(1, 3), hf_paper(2, 12), hf_paper(3, None), day=date.today())
    put(engine, hf_paper(4, 30), day=date.today() - timedelta(days=1))
    engine.dispose()
    result = cli("match", "--backtest", "--days", "5", "upvotes:>=10")
    assert result.code == 0, result.err
    assert "caught 2 of 4 papers over 2 days" in " ".join(result.out.split())
    shown = cli("match", "graph upvotes:>=10")
    assert "upvotes ≥ 10" in shown.out and "Paper number 2" in shown.out
    assert "Paper number 1" not in shown.out
    bad = cli("match", "upvotes:>=lots")
    assert bad.code != 0 and "upvotes:" in bad.err and len(bad.err.strip().splitlines()) == 1


# -- refreshed while recent ---------------------------------------------------------------------


def stored(engine: Engine) -> dict[str, Paper]:
    with session_scope(engine) as session:
        rows = list(session.exec(select(Paper).order_by(col(Paper.id))).all())
        session.expunge_all()
    return {row.uid: row for row in rows}


def test_a_recent_paper_takes_the_last_fetched_count_quietly(engine: Engine) -> None:
    put(engine, hf_paper(1, 3), hf_paper(2, 8))
    before = stored(engine)
    with session_scope(engine) as session:
        counts = store.store_dump(
            session,
            DumpFile(
                Path("hf-again.json"),
                "f" * 64,
                ParsedDump(DAY, (hf_paper(1, 41), hf_paper(2, 8))),
            ),
            now=NOW + timedelta(hours=3),
            source="hf",
        )
    assert (counts.new, counts.known, counts.revised) == (0, 2, 0)  # nothing new, nothing revised
    after = stored(engine)
    first = after["arxiv:2606.00001"]
    assert first.upvotes == 41
    assert first.updated_at == before["arxiv:2606.00001"].updated_at  # no feed entry changes
    assert first.revised_at is None
    assert after["arxiv:2606.00002"].upvotes == 8
    # Nothing stored since the first response, so nothing is new to a subscriber's window.
    with session_scope(engine) as session:
        assert store.papers_since(session, NOW + timedelta(hours=1)) == []


def test_an_old_paper_keeps_its_count_but_takes_a_first_one(engine: Engine) -> None:
    put(engine, hf_paper(1, 3), hf_paper(2, None))
    later = NOW + timedelta(days=UPVOTES_REFRESH_DAYS + 1)
    put(engine, hf_paper(1, 99), hf_paper(2, 6), day=later.date(), at=later)
    after = stored(engine)
    assert after["arxiv:2606.00001"].upvotes == 3  # its count had settled
    assert after["arxiv:2606.00002"].upvotes == 6  # it had none: the first count is taken
    edge = NOW + timedelta(days=UPVOTES_REFRESH_DAYS)
    put(engine, hf_paper(2, 7), day=edge.date(), at=edge)
    assert stored(engine)["arxiv:2606.00002"].upvotes == 7  # still recent on its 14th day


# -- the web form's live query check ------------------------------------------------------------


def test_the_web_query_check_counts_upvote_clauses(web_site: WebSite) -> None:
    site = web_site
    newest = date(2026, 3, 14)
    add_papers(site, newest, [("Popular graph paper", "a"), ("Quiet graph paper", "b")])
    add_papers(site, newest - timedelta(days=1), [("Uncounted graph paper", "c")])
    with session_scope(site.engine) as session:
        for row in session.exec(select(Paper)).all():
            row.upvotes = {"Popular graph paper": 25, "Quiet graph paper": 1}.get(row.title)
            session.add(row)
    lines = ["graph upvotes:>=10", "upvotes:<5", "graph"]
    answer = httpx.get(f"{site.base_url}/api/query-check", params={"queries": "\n".join(lines)})
    assert answer.status_code == 200
    assert answer.json()["lines"] == [1, 1, 3]
    broken = httpx.get(f"{site.base_url}/api/query-check", params={"queries": "upvotes:>=x"})
    assert broken.json()["valid"] is False and "upvotes:" in broken.json()["error"]
