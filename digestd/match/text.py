"""Text analysis shared by papers and queries: tokens with offsets, normalization, stemming.

A token is a maximal run of letters and digits in the original text (combining marks that
follow a letter stay with it, so decomposed accents do not split a word). Everything else
(spaces, punctuation, ``_``, ``-``) separates tokens, so ``Text-to-SQL`` is the three tokens
``text``, ``to``, ``sql``. Each token keeps its character offsets into the original text,
its normalized form (compatibility-decomposed, accents dropped, case-folded) used for
prefix matches, and its English stem used for word and phrase matches. Punctuation is not
kept, so a phrase may span a comma or a full stop between its words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import Stemmer

Field = Literal["title", "abstract"]
FIELDS: tuple[Field, ...] = ("title", "abstract")

# \w minus "_" is exactly str.isalnum(); combining marks are absorbed in tokenize().
_ALNUM_RUN = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a text: its span ``text[start:end]``, normalized form and stem."""

    start: int
    end: int
    norm: str
    stem: str


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


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def token_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character offsets of the raw tokens of ``text``, in order."""
    spans: list[tuple[int, int]] = []
    length = len(text)
    for run in _ALNUM_RUN.finditer(text):
        start, end = run.span()
        if spans and spans[-1][1] == start:
            # The previous token ended in combining marks that lead straight into this run.
            start = spans.pop()[0]
        while end < length and _is_mark(text[end]):
            end += 1
        spans.append((start, end))
    return spans


def normalize(word: str) -> str:
    """``word`` compatibility-decomposed and case-folded, keeping only letters and digits."""
    # NFKD twice: case folding can produce characters that decompose further (and vice versa).
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", word).casefold())
    return "".join(char for char in folded if char.isalnum())


@lru_cache(maxsize=1)
def _english_stemmer() -> Stemmer.Stemmer:
    stemmer = Stemmer.Stemmer("english")
    stemmer.maxCacheSize = 0  # _analyze_word caches instead
    return stemmer


def stem(norm: str) -> str:
    """The English stem of an already normalized word."""
    return str(_english_stemmer().stemWord(norm))


@lru_cache(maxsize=131072)
def _analyze_word(raw: str) -> tuple[str, str]:
    norm = normalize(raw)
    return norm, stem(norm)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` with offsets, normalized forms and stems; empty words are skipped."""
    tokens: list[Token] = []
    for start, end in token_spans(text):
        norm, stemmed = _analyze_word(text[start:end])
        if norm:
            tokens.append(Token(start, end, norm, stemmed))
    return tokens


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
