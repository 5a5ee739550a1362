"""Digests to hold the mail to its promises: two realistic ones planned by the real pipeline from
the bundled sample dump, and the largest, most hostile one the caps allow. Pure functions;
tests, scripts/check-mail and the benchmarks share them.

The sample dump (87 papers of Mar 14) carries titles and abstracts only, so each paper is given
what an arXiv API source would add, drawn in a fixed order from the names and categories of the
source fixtures (tests/fixtures/sources/): one to nine authors, categories, an arXiv id, upvotes
for some. Queries are matched and digests planned with ``match_queries`` and ``plan_digest``,
so entries carry real highlights, reasons and bylines.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from digestd.config import DigestSettings
from digestd.digest import CandidatePaper, Digest, QuerySource, plan_digest
from digestd.ingest import parse_dump_bytes
from digestd.jobs.common import match_queries

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_DUMP = ROOT / "digestd" / "data" / "sample-mar14.txt"
SOURCES = ROOT / "tests" / "fixtures" / "sources"
SAMPLE_DAY = datetime.date(2024, 3, 14)
STORED = datetime.datetime(2024, 3, 14, 6, tzinfo=datetime.UTC)
BASE_URL = "https://digest.example.org"
CAPS = DigestSettings()  # max_papers 25, full_entries 10, snippet_chars 300

# The 5-paper digest: a query and a followed topic that match five papers of the sample.
FIVE_PAPERS: tuple[tuple[QuerySource, str], ...] = (
    (QuerySource("query", "palm"), "palm"),
    (
        QuerySource("topic", "Small language models"),
        'title:"small language model" OR slm*',
    ),
)
# The 25-paper digest: broader interests, so more papers match than the cap shows.
MANY_PAPERS: tuple[tuple[QuerySource, str], ...] = (
    (QuerySource("query", '"code generation"'), '"code generation"'),
    (QuerySource("query", "compiler OR debugger"), "compiler OR debugger"),
    (QuerySource("topic", "Reasoning"), 'reasoning OR "chain of thought" OR "chain-of-thought"'),
)

# Hostile text for the worst case: markup, entities to be, quotes, right-to-left marks and
# text, emoji, a word too long for any line, LaTeX.
HOSTILE_PIECES = (
    "<script>alert('x')</script>",
    "AT&T \"quoted\" 'single' <b>bold</b> a<b & c>d",
    "\u202eevil\u202c \u200fשלום עולם\u200f مرحبا بالعالم",
    "🧪🔬📄👩🏽‍🔬 🇪🇺",
    "$\\alpha$-divergence \\textbf{bold} $O(n^2)$",
    "Supercalifragilistic" * 6,
)
LONG_NAME = "Maximiliana Theodora Wilhelmina von Hohenzollern-Sigmaringen-Auerbach"


@lru_cache(maxsize=1)
def _source_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The distinct author names and categories of the source fixtures, in file order."""
    names: dict[str, None] = {}
    categories: dict[str, None] = {}
    for path in sorted(SOURCES.iterdir()):
        if "error" in path.name or "bad" in path.name:
            continue
        parsed = parse_dump_bytes(path.read_bytes(), reference=SAMPLE_DAY)
        for paper in parsed.papers:
            names.update(dict.fromkeys(paper.authors))
            categories.update(dict.fromkeys(paper.categories))
    return tuple(names), tuple(categories)


@lru_cache(maxsize=1)
def sample_papers() -> dict[int, CandidatePaper]:
    """The 87 papers of the sample dump, with authors, categories, ids and upvotes added."""
    names, categories = _source_pool()
    parsed = parse_dump_bytes(SAMPLE_DUMP.read_bytes(), reference=SAMPLE_DAY)
    papers = {}
    for number, paper in enumerate(parsed.papers, 1):
        uid = f"2403.{10000 + number * 37:05}"
        authors = tuple(names[(number * 3 + k) % len(names)] for k in range(1 + number % 9))
        shown = tuple(categories[(number + k) % len(categories)] for k in range(1 + number % 3))
        papers[number] = CandidatePaper(
            id=number,
            uid=uid,
            title=paper.title,
            abstract=paper.abstract,
            url=f"https://arxiv.org/abs/{uid}",
            dump_date=parsed.dump_date,
            stored_at=STORED,
            authors=authors,
            categories=shown,
            published=parsed.dump_date - datetime.timedelta(days=number % 3),
            upvotes=(number * 7) % 40 if number % 2 else None,
        )
    return papers


def planned_digest(
    chosen: Sequence[tuple[QuerySource, str]],
    papers: dict[int, CandidatePaper],
    *,
    name: str = "Grace Hopper",
    email: str = "grace@example.org",
    subscriber_id: int = 7,
) -> Digest:
    """The digest a subscriber with ``chosen`` (source, query) gets from ``papers``."""
    matches = match_queries({query: query for _, query in chosen}, papers.values())
    planned = plan_digest(
        sources=[(source, matches.get(query)) for source, query in chosen],
        papers=papers,
        already_sent=frozenset(),
        max_papers=CAPS.max_papers,
    )
    assert planned is not None, "the sample queries match nothing"
    token = signed_token(subscriber_id)
    return Digest(
        subscriber_name=name,
        subscriber_email=email,
        digest_date=planned.digest_date,
        entries=planned.entries,
        more_count=planned.more_count,
        more_papers=planned.more_papers,
        unsubscribe_url=f"{BASE_URL}/unsubscribe/{token}",
        manage_url=f"{BASE_URL}/manage/{token}",
        site_name="Paper Digest",
        view_url=f"{BASE_URL}/view/{token}/{planned.digest_date.isoformat()}",
        pause_url=f"{BASE_URL}/pause/{token}",
        language="en",
        new_count=len(papers),
        query_count=len(chosen),
    )


def signed_token(subscriber_id: int) -> str:
    """A token as long as a signed link's (digestd.tokens), fixed so that samples are too."""
    return f"W{subscriber_id:x}LCJjZmUwMGRkZTQ2ZWY5NDI2Il0.axBVkg.lBX7B_e8qBnFPnPXgHYewYY9pQA"


def five_paper_digest() -> Digest:
    """A realistic digest of 5 papers (nothing more matched) from the sample."""
    return planned_digest(
        FIVE_PAPERS, sample_papers(), name="Ada Lovelace", email="ada@example.org"
    )


def many_paper_digest() -> Digest:
    """A realistic digest at the cap: 25 papers shown, the rest that matched listed."""
    return planned_digest(MANY_PAPERS, sample_papers())


def hostile_text(number: int, length: int) -> str:
    """About ``length`` characters of hostile text, varied by ``number``."""
    pieces = [f"Paper {number}: oracle"]
    while sum(len(piece) + 1 for piece in pieces) < length:
        pieces.append(HOSTILE_PIECES[(number + len(pieces)) % len(HOSTILE_PIECES)])
        pieces.append("oracle models of language, tested at scale.")
    return " ".join(pieces)[:length]


def hostile_papers(count: int) -> dict[int, CandidatePaper]:
    """``count`` papers with 1,000-character hostile titles, 60 long author names each,
    many categories and long hostile abstracts; all match the query "oracle"."""
    papers = {}
    for number in range(1, count + 1):
        uid = f"2403.{number:05}"
        papers[number] = CandidatePaper(
            id=number,
            uid=uid,
            title=hostile_text(number, 1_000),
            abstract=hostile_text(number + 1, 5_000),
            url=f"https://arxiv.org/abs/{uid}?ref={'x' * 120}&from=digest&q=%3Cscript%3E",
            dump_date=SAMPLE_DAY,
            stored_at=STORED,
            authors=tuple(f"{LONG_NAME} {number}-{k} <i>&</i>" for k in range(60)),
            categories=tuple(f"cs.{code}" for code in ("CL", "LG", "AI", "IR", "CV", "NE", "RO")),
            published=SAMPLE_DAY,
            upvotes=1_000_000 + number,
        )
    return papers


def worst_case_digest() -> Digest:
    """The largest digest the caps allow: ``max_papers`` hostile papers shown, the most titles
    listed past the cap, a five-figure count beyond, long names, addresses and links."""
    shown = CAPS.max_papers
    papers = hostile_papers(shown + 50)  # plan_digest lists at most 50 titles past the cap
    queries = tuple(
        (QuerySource("query", f"oracle {'<b>&</b> ' * 8}{k}"), "oracle") for k in range(3)
    )
    digest = planned_digest(
        queries,
        papers,
        name="Zoë \u202e<script>alert(1)</script> " + LONG_NAME,
        email=("a" * 60) + "@" + ("sub." * 10) + "example.org",
        subscriber_id=123_456_789,
    )
    return dataclasses.replace(
        digest,
        more_count=99_975,
        new_count=987_654,
        query_count=250,
        site_name="Paper Digest <b>&</b> Friends",
    )
