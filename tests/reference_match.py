"""The reference evaluator: every query walked against every paper, the simplest way.

It is the matching code digestd shipped before the indexed engine (digestd.match.engine), kept
here as the oracle the engine must agree with, result for result, in tests/test_engine.py.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from digestd.match.hits import Hit, PaperMatch, score_hits
from digestd.match.query import And, CompiledQuery, Node, Not, Or, Phrase, Prefix, Term, Word
from digestd.match.text import FIELDS, Field, Token, tokenize

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
    """A paper's title and abstract, each analyzed once so any number of queries can run on it."""

    title: AnalyzedField
    abstract: AnalyzedField

    def field(self, name: Field) -> AnalyzedField:
        """The analyzed field called ``name``."""
        return self.title if name == "title" else self.abstract


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


def analyze_paper(title: str, abstract: str) -> AnalyzedPaper:
    """A paper analyzed once for matching: both fields tokenized, normalized and stemmed."""
    return AnalyzedPaper(title=analyze_field(title), abstract=analyze_field(abstract))


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


def _evaluate(node: Node, paper: AnalyzedPaper) -> tuple[bool, list[Hit]]:
    """Whether ``node`` matches ``paper``, and the hits of the positive terms that made it so."""
    hits: list[Hit] = []
    if isinstance(node, Word | Phrase | Prefix):
        for name in (node.field,) if node.field else FIELDS:
            count = _count(node, paper.field(name))
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
    for key, query in queries.items():
        matches: dict[P, PaperMatch] = {}
        for paper_key, paper in papers.items():
            match = match_paper(query, paper)
            if match is not None:
                matches[paper_key] = match
        if matches:
            results[key] = matches
    return results
