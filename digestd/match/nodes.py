"""The nodes of a parsed query (frozen dataclasses): the terms and the operators joining them.

A term is a :class:`Word`, a :class:`Phrase` or a :class:`Prefix`, optionally limited to one
field. What a term matches by depends on its field (see :mod:`digestd.match.query`): in the
title and abstract a word matches by English stem, in author names by normalized form (names
are not stemmed), in categories by category name. A term's ``stem`` (or ``stems``) always
holds that key, so the engine looks every field up the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from digestd.match.text import Field

# Fields whose name is part of how a term is shown: "author:lecun" and "cat:cs.cl" say where
# they matched on their own, as a title or abstract word does not need to.
_NAMED_FIELDS = frozenset(("author", "cat"))


def _shown(field: Field | None, body: str) -> str:
    return f"{field}:{body}" if field in _NAMED_FIELDS else body


@dataclass(frozen=True)
class Word:
    """A single word: matched by stem in text, by normalized form in author names, by name
    (or archive) in categories; ``stem`` is that key."""

    norm: str
    stem: str
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return _shown(self.field, self.norm)


@dataclass(frozen=True)
class Phrase:
    """Two or more words matched consecutively, in order, within one field (within one
    author's name for ``author:``)."""

    norms: tuple[str, ...]
    stems: tuple[str, ...]
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return _shown(self.field, '"' + " ".join(self.norms) + '"')


@dataclass(frozen=True)
class Prefix:
    """Every normalized (unstemmed) token, or category name, starting with ``prefix``."""

    prefix: str
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return _shown(self.field, self.prefix + "*")


UpvoteTest = Literal[">=", ">", "<=", "<", "top"]
_SHOWN_TESTS: dict[str, str] = {">=": "≥ ", ">": "> ", "<=": "≤ ", "<": "< "}


@dataclass(frozen=True)
class Upvotes:
    """A test of a paper's upvote count: compared with ``value`` (``>=``, ``>``, ``<=``,
    ``<``) or, for ``top``, among the ``value`` most upvoted papers of its day. A paper
    without an upvote count passes no test."""

    test: UpvoteTest
    value: int
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def field(self) -> Field:
        """Always "upvotes": the test reads nothing else."""
        return "upvotes"

    @property
    def display(self) -> str:
        """The term as written in a query: ``upvotes:>=10``, ``upvotes:top10``."""
        return f"upvotes:{self.test}{self.value}"

    @property
    def label(self) -> str:
        """The test as a reader is shown it: ``upvotes ≥ 10``, and ``upvotes:top10`` as written
        (the field's name, as in ``author:``, reads the same in every language)."""
        if self.test == "top":
            return self.display
        return f"upvotes {_SHOWN_TESTS[self.test]}{self.value}"


@dataclass(frozen=True)
class Not:
    """Matches when ``child`` does not."""

    child: Node
    start: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    """Matches when every child matches."""

    children: tuple[Node, ...]
    start: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    """Matches when any child matches."""

    children: tuple[Node, ...]
    start: int = dataclasses.field(default=0, compare=False)


Term = Word | Phrase | Prefix | Upvotes
Node = Word | Phrase | Prefix | Upvotes | Not | And | Or
TERM_TYPES = (Word, Phrase, Prefix, Upvotes)  # for isinstance: the leaves of a query


def phrase_or_word(norms: list[str], stems: list[str], *, start: int = 0) -> Word | Phrase:
    """A Word for one token, a Phrase for several."""
    if len(norms) == 1:
        return Word(norms[0], stems[0], start=start)
    return Phrase(tuple(norms), tuple(stems), start=start)


def in_field(term: Word | Phrase | Prefix, field: Field, *, start: int) -> Term:
    """``term`` limited to ``field``, starting at ``start``.

    Names are not stemmed (``author:rivers`` must not find "River"), so a word or phrase
    limited to author names matches by its normalized words: they become its stems.
    """
    if field == "author" and isinstance(term, Word):
        return Word(term.norm, term.norm, field, start)
    if field == "author" and isinstance(term, Phrase):
        return Phrase(term.norms, term.norms, field, start)
    return dataclasses.replace(term, field=field, start=start)
