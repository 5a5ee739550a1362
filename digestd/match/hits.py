"""What a match says: the hits (term, field, count) behind it, its score, and highlighting.

A match records a Hit for every positive term, per field, that took part in making the query
true (terms under a negation, and terms of OR branches that did not match, never count).
The score is the sum over hits of ``FIELD_WEIGHTS[field] * (1 + ln(count))`` (exactly rounded,
so in any order): a title hit weighs three abstract hits, and repeating a word raises its
weight only gently. An author hit weighs two abstract hits (a name is chosen on purpose and
rarely found by chance); a category hit half of one (a category holds hundreds of papers a day,
so it should rank papers less than the words a query pairs it with). The count of an author or
category hit is how many words of the names, or how many categories, it found. An upvotes
test that held is a hit of count 1 weighing what a category hit does: it says a paper is
popular, not what it is about, so it must not outrank the words of the query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

from digestd.match.nodes import Phrase, Prefix, Word, phrase_or_word
from digestd.match.text import Token, tokenize

FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 3.0,
    "abstract": 1.0,
    "author": 2.0,
    "cat": 0.5,
    "upvotes": 0.5,
}


class Hit(NamedTuple):
    """A query term found in one field of a paper, ``count`` times."""

    term: str
    field: str
    count: int  # type: ignore[assignment]  # shadows tuple.count, on purpose

    @property
    def weight(self) -> float:
        """What this hit adds to a match's score."""
        return _weight(self.field, self.count)


class PaperMatch(NamedTuple):
    """A paper matched by a query: its score and the hits that explain it."""

    score: float
    hits: tuple[Hit, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The distinct hit terms, in first-hit order."""
        return tuple(dict.fromkeys(hit.term for hit in self.hits))


@lru_cache(maxsize=4096)
def _weight(field: str, count: int) -> float:
    return FIELD_WEIGHTS[field] * (1.0 + math.log(count))


def score_hits(hits: Iterable[Hit]) -> float:
    """The ranking score of a set of hits: title hits weigh more, repeats count gently.

    Summed with math.fsum, so the score does not depend on the order of the hits.
    """
    return math.fsum([_weight(hit.field, hit.count) for hit in hits])


@lru_cache(maxsize=65536)
def _term_from_display(display: str) -> Word | Phrase | Prefix | None:
    """The title or abstract term a Hit's ``term`` string stands for, or None if it names
    nothing there (author and category hits mark no text)."""
    if display.startswith(("author:", "cat:", "upvotes:")):
        return None
    if display.endswith("*"):
        tokens = tokenize(display[:-1])
        return Prefix(tokens[0].norm) if len(tokens) == 1 else None
    tokens = tokenize(display.strip('"'))
    if not tokens:
        return None
    return phrase_or_word([t.norm for t in tokens], [t.stem for t in tokens])


class _Words(NamedTuple):
    """A text's tokens, and where each stem occurs among them."""

    tokens: tuple[Token, ...]
    positions: dict[str, list[int]]


@lru_cache(maxsize=8192)
def _words(text: str) -> _Words:
    tokens = tuple(tokenize(text))
    positions: dict[str, list[int]] = {}
    for index, token in enumerate(tokens):
        positions.setdefault(token.stem, []).append(index)
    return _Words(tokens, positions)


def _token_ranges(term: Word | Phrase | Prefix, words: _Words) -> list[tuple[int, int]]:
    """The ``[first, last)`` token ranges where ``term`` occurs."""
    if isinstance(term, Word):
        return [(i, i + 1) for i in words.positions.get(term.stem, ())]
    tokens = words.tokens
    if isinstance(term, Phrase):
        width = len(term.stems)
        return [
            (i, i + width)
            for i in words.positions.get(term.stems[0], ())
            if tuple(token.stem for token in tokens[i : i + width]) == term.stems
        ]
    return [(i, i + 1) for i, token in enumerate(tokens) if token.norm.startswith(term.prefix)]


def highlight(text: str, hits: Iterable[Hit]) -> list[tuple[str, bool]]:
    """``text`` cut into consecutive segments, True for the words and phrases ``hits`` matched.

    The caller passes the hits of the field ``text`` comes from; joining the segments gives
    back ``text`` exactly.
    """
    return list(_highlight(text, frozenset(hit.term for hit in hits)))


@lru_cache(maxsize=65536)
def _spans(text: str, display: str) -> tuple[tuple[int, int], ...]:
    """The character spans of ``text`` where the term shown as ``display`` occurs."""
    # Cached per (text, term): the same paper is highlighted for many subscribers, each with
    # their own mix of terms drawn from a shared vocabulary.
    term = _term_from_display(display)
    if term is None:
        return ()
    words = _words(text)
    tokens = words.tokens
    return tuple(
        (tokens[first].start, tokens[last - 1].end) for first, last in _token_ranges(term, words)
    )


@lru_cache(maxsize=65536)
def _highlight(text: str, displays: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    spans = sorted(span for display in displays for span in _spans(text, display))
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    segments: list[tuple[str, bool]] = []
    cursor = 0
    for start, end in merged:
        if start > cursor:
            segments.append((text[cursor:start], False))
        segments.append((text[start:end], True))
        cursor = end
    if cursor < len(text):
        segments.append((text[cursor:], False))
    return tuple(segments)
