"""What matching reads of a paper (:class:`PaperText`), how author names and categories are
analyzed for it, and how a hit on them is described to a reader.

Author names are tokenized and folded like title and abstract (:mod:`digestd.match.text`) but
not stemmed; the words of all of a paper's authors are kept in one list, each name separated
from the next by an empty word that no query word equals, so a phrase never spans two names.
Categories are compared whole and lower-cased; a category is also found by its archive (the
part before the dot: ``cs`` for ``cs.CL``). The rules are those of :mod:`digestd.match.query`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from digestd.errors import QueryError
from digestd.match.hits import Hit
from digestd.match.nodes import Phrase, Prefix, Term, Upvotes, Word
from digestd.match.query import parse_query
from digestd.match.text import TEXT_FIELDS, analyze_words

NAME_BREAK = ""  # between two authors' words: tokens are never empty, so nothing matches it


class PaperText(NamedTuple):
    """What matching reads of a paper: title, abstract, author names, categories, and its
    upvote count (None where no source counts them) and own day (for ``upvotes:top``)."""

    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # primary first, as arXiv lists them
    upvotes: int | None = None
    day: date | None = None


def author_words(authors: Iterable[str]) -> list[str]:
    """The normalized words of every name in ``authors``, names separated by NAME_BREAK."""
    words: list[str] = []
    for name in authors:
        if words:
            words.append(NAME_BREAK)
        words.extend(analyze_words(name)[0])
    return words


def category_name(category: str) -> str:
    """``category`` as queries compare it: trimmed and lower-cased."""
    return category.strip().lower()


def category_words(categories: Iterable[str]) -> tuple[list[str], list[str]]:
    """The names of ``categories`` (for prefixes), and the keys a category word is looked up
    by: every name and, for a subject class, its archive (``cs`` for ``cs.cl``)."""
    names = [category_name(category) for category in categories]
    keys: list[str] = []
    for name in names:
        keys.append(name)
        archive, dot, _ = name.partition(".")
        if dot and archive:
            keys.append(archive)
    return names, keys


def _author_count(term: Word | Phrase | Prefix, name: str) -> int:
    words = analyze_words(name)[0]
    if isinstance(term, Word):
        return words.count(term.norm)
    if isinstance(term, Prefix):
        return sum(word.startswith(term.prefix) for word in words)
    width = len(term.norms)
    return sum(tuple(words[i : i + width]) == term.norms for i in range(len(words) - width + 1))


def _category_matches(term: Word | Phrase | Prefix, category: str) -> bool:
    name = category_name(category)
    if isinstance(term, Prefix):
        return name.startswith(term.prefix)
    key = term.norm if isinstance(term, Word) else " ".join(term.norms)
    return name == key or ("." not in key and name.startswith(key + "."))


@lru_cache(maxsize=4096)
def _term_from_display(display: str) -> Term | None:
    """The author or category term a Hit's ``term`` string stands for (it is query syntax)."""
    try:
        root = parse_query(display)
    except QueryError:
        return None
    return root if isinstance(root, Word | Phrase | Prefix | Upvotes) else None


def hit_labels(
    hits: Iterable[Hit], *, authors: Sequence[str] = (), categories: Sequence[str] = ()
) -> tuple[str, ...]:
    """What a reader is shown for ``hits``, each label once, in hit order: the term of a
    title or abstract hit, ``author: Yann LeCun`` for each author an author hit found, and
    ``cat:cs.CL`` for each category a category hit found (as the paper spells them), and the
    test of an upvotes hit as words (``upvotes ≥ 10``, ``upvotes:top10``)."""
    labels: dict[str, None] = {}
    for hit in hits:
        if hit.field in TEXT_FIELDS:
            labels[hit.term] = None
            continue
        term = _term_from_display(hit.term)
        if term is None:
            labels[hit.term] = None
        elif isinstance(term, Upvotes):
            labels[term.label] = None
        elif hit.field == "author":
            labels.update(
                (f"author: {name}", None) for name in authors if _author_count(term, name)
            )
        else:
            labels.update(
                (f"cat:{category}", None)
                for category in categories
                if _category_matches(term, category)
            )
    return tuple(labels)
