"""Evaluating compiled queries on analyzed papers: which papers match, why, and how well.

A match records a Hit for every positive term, per field, that took part in making the query
true (terms under a negation, and terms of OR branches that did not match, never count).
The score is the sum over hits of ``FIELD_WEIGHTS[field] * (1 + ln(count))``: a title hit
weighs three abstract hits, and repeating a word raises its weight only gently.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from digestd.match.query import (
    And,
    CompiledQuery,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    Word,
    phrase_or_word,
)
from digestd.match.text import FIELDS, AnalyzedField, AnalyzedPaper, analyze_field, tokenize

FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "abstract": 1.0}
_FIELD_RANK: Mapping[str, int] = {name: rank for rank, name in enumerate(FIELDS)}

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)


@dataclass(frozen=True)
class Hit:
    """A query term found in one field of a paper, ``count`` times."""

    term: str
    field: str
    count: int


@dataclass(frozen=True)
class PaperMatch:
    """A paper matched by a query: its score and the hits that explain it."""

    score: float
    hits: tuple[Hit, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The distinct hit terms, in first-hit order."""
        return tuple(dict.fromkeys(hit.term for hit in self.hits))


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


def _token_ranges(term: Term, field: AnalyzedField) -> list[tuple[int, int]]:
    """The ``[first, last)`` token ranges where ``term`` occurs in ``field``."""
    if isinstance(term, Word):
        return [(i, i + 1) for i in field.positions.get(term.stem, ())]
    if isinstance(term, Phrase):
        return [(i, i + len(term.stems)) for i in _phrase_starts(term.stems, field)]
    return [
        (i, i + 1) for i, token in enumerate(field.tokens) if token.norm.startswith(term.prefix)
    ]


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


def score_hits(hits: Iterable[Hit]) -> float:
    """The ranking score of a set of hits: title hits weigh more, repeats count gently."""
    return sum(FIELD_WEIGHTS[hit.field] * (1.0 + math.log(hit.count)) for hit in hits)


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


def _term_from_display(display: str) -> Term | None:
    """The term a Hit's ``term`` string stands for, or None if it names nothing."""
    if display.endswith("*"):
        tokens = tokenize(display[:-1])
        return Prefix(tokens[0].norm) if len(tokens) == 1 else None
    tokens = tokenize(display.strip('"'))
    if not tokens:
        return None
    return phrase_or_word([t.norm for t in tokens], [t.stem for t in tokens])


def highlight(text: str, hits: Iterable[Hit]) -> list[tuple[str, bool]]:
    """``text`` cut into consecutive segments, True for the words and phrases ``hits`` matched.

    The caller passes the hits of the field ``text`` comes from; joining the segments gives
    back ``text`` exactly.
    """
    terms = {term for hit in hits if (term := _term_from_display(hit.term)) is not None}
    field = analyze_field(text)
    spans = sorted(
        (field.tokens[first].start, field.tokens[last - 1].end)
        for term in terms
        for first, last in _token_ranges(term, field)
    )
    segments: list[tuple[str, bool]] = []
    cursor = 0
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in merged:
        if start > cursor:
            segments.append((text[cursor:start], False))
        segments.append((text[start:end], True))
        cursor = end
    if cursor < len(text):
        segments.append((text[cursor:], False))
    return segments
