"""Text analysis shared by papers and queries: tokens with offsets, normalization, stemming.

A token is a maximal run of letters and digits in the original text (combining marks that
follow a letter stay with it, so decomposed accents do not split a word). Everything else
(spaces, punctuation, ``_``, ``-``) separates tokens, so ``Text-to-SQL`` is the three tokens
``text``, ``to``, ``sql``. Each token keeps its character offsets into the original text,
its normalized form (compatibility-decomposed, accents dropped, case-folded, letters such as
ø and ß spelled out: see digestd.folding) used for
prefix matches, and its English stem used for word and phrase matches. Punctuation is not
kept, so a phrase may span a comma or a full stop between its words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import Stemmer

from digestd.folding import fold_word

Field = Literal["title", "abstract", "author", "cat", "upvotes"]
# Hits are listed in this order; "upvotes" is a number, not text (see digestd.match.query).
FIELDS: tuple[Field, ...] = ("title", "abstract", "author", "cat", "upvotes")
TEXT_FIELDS: tuple[Field, ...] = ("title", "abstract")  # what a term without a field matches

# \w minus "_" is exactly str.isalnum(); combining marks are absorbed in tokenize().
_ALNUM_RUN = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a text: its span ``text[start:end]``, normalized form and stem."""

    start: int
    end: int
    norm: str
    stem: str


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
    """``word`` folded (digestd.folding: decomposed, case-folded, accents dropped, ø as o, æ as
    ae and so on), keeping only letters and digits."""
    return fold_word(word)


@lru_cache(maxsize=1)
def _english_stemmer() -> Stemmer.Stemmer:
    stemmer = Stemmer.Stemmer("english")
    stemmer.maxCacheSize = 0  # _analyze_word and analyze_words keep their own caches
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


# ASCII text: every byte that is not a letter or digit becomes a space, letters lower case,
# so bytes.split() gives the normalized words (the same words tokenize() finds).
_ASCII_FOLD = bytes(
    byte + 32 if 65 <= byte <= 90 else byte if (48 <= byte <= 57 or 97 <= byte <= 122) else 32
    for byte in range(256)
)
_WORD_CACHE_SIZE = 500_000


class WordTable:
    """Folded ASCII word -> its normalized form and its stem, for every text analyzed with it:
    most words recur, and a dictionary lookup is far cheaper than stemming. Bounded (cleared
    past ``limit`` words); a MatchCache owns the one its indexes share."""

    def __init__(self, limit: int = _WORD_CACHE_SIZE) -> None:
        self.limit = limit
        self._norms: dict[bytes, str] = {}
        self._stems: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._norms)

    def clear(self) -> None:
        """Forget every word."""
        self._norms.clear()
        self._stems.clear()

    def analyze(self, text: str) -> tuple[list[str], list[str]]:
        """The normalized forms and the stems of the words of ``text``, in order: the same
        words as :func:`tokenize`, without offsets, what matching needs, quickly."""
        if not text.isascii():
            tokens = tokenize(text)
            return [t.norm for t in tokens], [t.stem for t in tokens]
        words = text.encode("ascii").translate(_ASCII_FOLD).split()
        norms, stems = self._norms, self._stems
        try:
            return list(map(norms.__getitem__, words)), list(map(stems.__getitem__, words))
        except KeyError:
            pass  # a word not seen before: analyze the new ones, then look up again
        if len(norms) > self.limit:
            self.clear()
        for word in set(words).difference(norms):
            norm = norms[word] = word.decode("ascii")
            stems[word] = stem(norm)
        return list(map(norms.__getitem__, words)), list(map(stems.__getitem__, words))


def analyze_words(text: str, words: WordTable | None = None) -> tuple[list[str], list[str]]:
    """The normalized forms and the stems of the words of ``text``, in order, looked up in
    ``words`` (a table of this call's own by default)."""
    return (words if words is not None else WordTable()).analyze(text)
