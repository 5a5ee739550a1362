"""The reference evaluator: every query walked against every paper, the simplest way.

It is the matching code digestd shipped before the indexed engine (digestd.match.engine), kept
here as the oracle the engine must agree with, result for result, in tests/test_engine.py.
Author names and categories are matched here the plain way, name by name and category by
category, from the rules in digestd.match.query, sharing no code with the engine's indexes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import TypeVar

from digestd.match.hits import Hit, PaperMatch, score_hits
from digestd.match.query import (
    And,
    CompiledQuery,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    Upvotes,
    Word,
)
from digestd.match.text import FIELDS, TEXT_FIELDS, Token, tokenize

_FIELD_RANK: Mapping[str, int] = {name: rank for rank, name in enumerate(FIELDS)}

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)


@dataclass(frozen=True)
class AnalyzedField:
    """One field (title or abstract) analyzed for matching.

    ``stems[i]`` is the stem of ``tokens[i]``; ``positions`` maps each stem to the token
    positions where it occurs (for phrases and counts); ``norm_counts`` maps each normalized
    token to its number of occurrences (for prefix lookups).
    """

    text: str
    tokens: tuple[Token, ...]
    stems: tuple[str, ...]
    positions: Mapping[str, tuple[int, ...]]
    norm_counts: Mapping[str, int]
    stem_set: frozenset[str]
    norm_set: frozenset[str]


@dataclass(frozen=True)
class AnalyzedPaper:
    """A paper's title and abstract, each analyzed once so any number of queries can run on
    it; each author's name as its normalized words, each category lower-cased."""

    title: AnalyzedField
    abstract: AnalyzedField
    authors: tuple[tuple[str, ...], ...] = ()
    categories: tuple[str, ...] = ()
    upvotes: int | None = None
    day: date | None = None
    day_rank: int | None = None  # set by match_papers, which sees the whole day


def analyze_field(text: str) -> AnalyzedField:
    """``text`` tokenized and indexed by stem and normalized form."""
    tokens = tuple(tokenize(text))
    positions: dict[str, list[int]] = {}
    norm_counts: dict[str, int] = {}
    for index, token in enumerate(tokens):
        positions.setdefault(token.stem, []).append(index)
        norm_counts[token.norm] = norm_counts.get(token.norm, 0) + 1
    return AnalyzedField(
        text=text,
        tokens=tokens,
        stems=tuple(token.stem for token in tokens),
        positions={key: tuple(value) for key, value in positions.items()},
        norm_counts=norm_counts,
        stem_set=frozenset(positions),
        norm_set=frozenset(norm_counts),
    )


def analyze_paper(
    title: str,
    abstract: str,
    authors: Sequence[str] = (),
    categories: Sequence[str] = (),
    upvotes: int | None = None,
    day: date | None = None,
) -> AnalyzedPaper:
    """A paper analyzed once for matching: title and abstract tokenized, normalized and
    stemmed; names tokenized and normalized, one by one; categories lower-cased."""
    return AnalyzedPaper(
        title=analyze_field(title),
        abstract=analyze_field(abstract),
        authors=tuple(tuple(token.norm for token in tokenize(name)) for name in authors),
        categories=tuple(category.strip().lower() for category in categories),
        upvotes=upvotes,
        day=day,
    )


def _passes(test: Upvotes, paper: AnalyzedPaper) -> bool:
    """Whether ``paper`` passes the upvote ``test`` (never without an upvote count)."""
    if paper.upvotes is None:
        return False
    checks = {
        ">=": paper.upvotes >= test.value,
        ">": paper.upvotes > test.value,
        "<=": paper.upvotes <= test.value,
        "<": paper.upvotes < test.value,
        "top": paper.day_rank is not None and paper.day_rank <= test.value,
    }
    return checks[test.test]


def _with_day_ranks(papers: Mapping[P, AnalyzedPaper]) -> dict[P, AnalyzedPaper]:
    """``papers``, each with an upvote count and a day knowing its place in that day: one
    plus the papers of the day with more upvotes, or as many and an earlier key."""
    keyed = list(papers.items())
    ranked: dict[P, AnalyzedPaper] = {}
    for position, (key, paper) in enumerate(keyed):
        if paper.upvotes is None or paper.day is None:
            ranked[key] = paper
            continue
        tie = key if isinstance(key, int) else position
        ahead = 0
        for other_position, (other_key, other) in enumerate(keyed):
            if other.upvotes is None or other.day != paper.day or other_key == key:
                continue
            other_tie = other_key if isinstance(other_key, int) else other_position
            if other.upvotes > paper.upvotes or (
                other.upvotes == paper.upvotes and (other_tie, other_position) < (tie, position)
            ):
                ahead += 1
        ranked[key] = replace(paper, day_rank=ahead + 1)
    return ranked


def _phrase_starts(stems: tuple[str, ...], field: AnalyzedField) -> list[int]:
    rest = stems[1:]
    width = len(stems)
    return [
        position
        for position in field.positions.get(stems[0], ())
        if field.stems[position + 1 : position + width] == rest
    ]


def _count(term: Term, field: AnalyzedField) -> int:
    """How many times ``term`` occurs in ``field``."""
    if isinstance(term, Word):
        return len(field.positions.get(term.stem, ()))
    if isinstance(term, Phrase):
        return len(_phrase_starts(term.stems, field))
    return sum(count for norm, count in field.norm_counts.items() if norm.startswith(term.prefix))


def _name_count(term: Term, words: tuple[str, ...]) -> int:
    """How many times ``term`` occurs in one author's name (its normalized words)."""
    if isinstance(term, Word):
        return words.count(term.norm)
    if isinstance(term, Phrase):
        width = len(term.norms)
        return sum(words[i : i + width] == term.norms for i in range(len(words) - width + 1))
    return sum(word.startswith(term.prefix) for word in words)


def _is_in_category(term: Term, category: str) -> bool:
    """Whether ``term`` (a category name or prefix) finds ``category``."""
    if isinstance(term, Prefix):
        return category.startswith(term.prefix)
    assert isinstance(term, Word)
    name = term.norm
    return category == name or ("." not in name and category.startswith(name + "."))


def _field_count(term: Term, paper: AnalyzedPaper, name: str) -> int:
    """How many times ``term`` occurs in field ``name`` of ``paper``."""
    if name == "title":
        return _count(term, paper.title)
    if name == "abstract":
        return _count(term, paper.abstract)
    if name == "author":
        return sum(_name_count(term, words) for words in paper.authors)
    return sum(_is_in_category(term, category) for category in paper.categories)


def _evaluate(node: Node, paper: AnalyzedPaper) -> tuple[bool, list[Hit]]:
    """Whether ``node`` matches ``paper``, and the hits of the positive terms that made it so."""
    hits: list[Hit] = []
    if isinstance(node, Upvotes):
        passed = _passes(node, paper)
        return passed, [Hit(node.display, "upvotes", 1)] if passed else []
    if isinstance(node, Word | Phrase | Prefix):
        for name in (node.field,) if node.field else TEXT_FIELDS:
            count = _field_count(node, paper, name)
            if count:
                hits.append(Hit(node.display, name, count))
        return bool(hits), hits
    if isinstance(node, Not):
        return not _evaluate(node.child, paper)[0], []
    if isinstance(node, And):
        for child in node.children:
            matched, child_hits = _evaluate(child, paper)
            if not matched:
                return False, []
            hits.extend(child_hits)
        return True, hits
    assert isinstance(node, Or)
    any_matched = False
    for child in node.children:
        matched, child_hits = _evaluate(child, paper)
        if matched:
            any_matched = True
            hits.extend(child_hits)
    return any_matched, hits


def match_paper(query: CompiledQuery, paper: AnalyzedPaper) -> PaperMatch | None:
    """How ``query`` matches ``paper``, or None when it does not."""
    matched, hits = _evaluate(query.root, paper)
    if not matched:
        return None
    rank: dict[str, int] = {}
    for term in query.terms:
        rank.setdefault(term.display, len(rank))
    # set(): a term written twice in the query is still one hit per field.
    ordered = sorted(set(hits), key=lambda hit: (_FIELD_RANK[hit.field], rank[hit.term]))
    return PaperMatch(score=score_hits(ordered), hits=tuple(ordered))


def match_papers(
    queries: Mapping[K, CompiledQuery], papers: Mapping[P, AnalyzedPaper]
) -> dict[K, dict[P, PaperMatch]]:
    """For each query key, the papers it matches (in ``papers`` order) with their matches.

    Queries and papers without any match are left out.
    """
    results: dict[K, dict[P, PaperMatch]] = {}
    papers = _with_day_ranks(papers)
    for key, query in queries.items():
        matches: dict[P, PaperMatch] = {}
        for paper_key, paper in papers.items():
            match = match_paper(query, paper)
            if match is not None:
                matches[paper_key] = match
        if matches:
            results[key] = matches
    return results
