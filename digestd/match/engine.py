"""The matching engine: a batch of papers indexed once, every compiled profile run against it.

The papers of a run (a day, a send window) are analyzed once into an inverted index per field:
stem -> bitset of papers (and, built when first needed, normalized word -> bitset). A term's
papers are then one dictionary lookup (a word), the intersection of its words' bitsets checked
against word positions (a phrase; when many papers hold every word, an index of consecutive
word pairs narrows them first), or a union over a sorted vocabulary range (a prefix), each
computed once per run. Profiles are evaluated shape by shape with integer bit operations (see
:mod:`digestd.match.compile`); scores and hits are worked out later, only for the pairs someone
asks about (see :mod:`digestd.match.results`).

Title and abstract are indexed at once; author names and categories (see
:mod:`digestd.match.fields`) only when a query first asks for them, so a run whose queries
never do pays nothing for them. Upvote counts are kept as they are, with each paper's rank
among the batch's papers of its day (most upvoted first, ties to the lower key), for
``upvotes:`` tests.

Large batches are cut into chunks of ``CHUNK_SIZE`` papers so bitsets stay small.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Generic, TypeVar

from digestd.match.compile import Catalog, ProfileSet
from digestd.match.fields import PaperText, author_words, category_words
from digestd.match.nodes import Phrase, Prefix, Upvotes, Word
from digestd.match.results import MatchResult
from digestd.match.text import Field, WordTable

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)

CHUNK_SIZE = 4096
_FEW_CANDIDATES = 4  # phrase candidates checked one by one rather than with the pair index


@dataclass
class _FieldIndex:
    """One field of a chunk of papers: words in order per paper, and the inverted index.

    Stems are indexed as papers are added; normalized words (for prefixes) and consecutive
    pairs (for phrases) only when a term first needs them.
    """

    norms: list[list[str]] = field(default_factory=list)
    stems: list[list[str]] = field(default_factory=list)
    stem_bits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    _norm_bits: dict[str, int] | None = None
    _sorted_norms: list[str] = field(default_factory=list)
    _pair_bits: dict[tuple[str, str], int] | None = None
    _stem_counts: dict[int, Counter[str]] = field(default_factory=dict)
    _norm_counts: dict[int, Counter[str]] = field(default_factory=dict)
    _prefix_words: dict[str, list[str]] = field(default_factory=dict)
    _pairs_indexed: tuple[int, int] = (0, 0)

    def add(self, number: int, text: str, words: WordTable) -> None:
        """Index ``text`` as paper ``number`` (the next one), its words looked up in ``words``."""
        norms, stems = words.analyze(text)
        self.add_words(number, norms, stems)

    def add_words(self, number: int, norms: list[str], stems: list[str]) -> None:
        """Index paper ``number`` (the next one): its words for prefixes, and the keys that
        words and phrases are looked up by, in order."""
        self.norms.append(norms)
        self.stems.append(stems)
        bit = 1 << number
        stem_bits = self.stem_bits
        for stem in set(stems):
            stem_bits[stem] |= bit

    def phrase_count(self, number: int, stems: tuple[str, ...], *, at_most: int = -1) -> int:
        """How many times the phrase ``stems`` occurs in paper ``number`` (stopping at
        ``at_most`` when that is positive)."""
        words, first, rest, width = self.stems[number], stems[0], list(stems[1:]), len(stems)
        count, start = 0, -1
        while count != at_most:
            try:
                start = words.index(first, start + 1)
            except ValueError:
                break
            if words[start + 1 : start + width] == rest:
                count += 1
        return count

    def _pair_index(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Consecutive stem pair -> papers, for the pairs of every phrase in ``wanted``
        (which only grows: the index is rebuilt when it has)."""
        if self._pair_bits is None or self._pairs_indexed != (id(wanted), len(wanted)):
            pair_bits: defaultdict[tuple[str, str], int] = defaultdict(int)
            for number, stems in enumerate(self.stems):
                bit = 1 << number
                for pair in wanted.intersection(itertools.pairwise(stems)):
                    pair_bits[pair] |= bit
            self._pair_bits = dict(pair_bits)
            self._pairs_indexed = (id(wanted), len(wanted))
        return self._pair_bits

    def _norm_index(self) -> dict[str, int]:
        if self._norm_bits is None:
            norm_bits: defaultdict[str, int] = defaultdict(int)
            for number, norms in enumerate(self.norms):
                bit = 1 << number
                for norm in set(norms):
                    norm_bits[norm] |= bit
            self._norm_bits = dict(norm_bits)
            self._sorted_norms = sorted(norm_bits)
        return self._norm_bits

    def bits(self, term: Word | Phrase | Prefix, phrase_pairs: set[tuple[str, str]]) -> int:
        """The papers of this chunk where ``term`` occurs in this field; ``phrase_pairs``
        holds the consecutive pairs of every phrase compiled so far."""
        if isinstance(term, Word):
            return self.stem_bits.get(term.stem, 0)
        if isinstance(term, Phrase):
            return self._phrase_bits(term.stems, phrase_pairs)
        norm_bits, found = self._norm_index(), 0
        for norm in self._prefixed(term.prefix):
            found |= norm_bits[norm]
        return found

    def _phrase_bits(self, stems: tuple[str, ...], phrase_pairs: set[tuple[str, str]]) -> int:
        candidates = -1
        for stem in stems:
            candidates &= self.stem_bits.get(stem, 0)
            if not candidates:
                return 0
        if candidates.bit_count() > _FEW_CANDIDATES:
            # Many papers hold every word: narrow them to those holding every consecutive
            # pair (exact for two words) with the pair index, built once for the chunk.
            pair_bits = self._pair_index(phrase_pairs)
            for pair in itertools.pairwise(stems):
                candidates &= pair_bits.get(pair, 0)
            if len(stems) == 2:
                return candidates
        found = 0
        while candidates:
            lowest = candidates & -candidates
            candidates ^= lowest
            if self.phrase_count(lowest.bit_length() - 1, stems, at_most=1):
                found |= lowest
        return found

    def count(self, term: Word | Phrase | Prefix, number: int) -> int:
        """How many times ``term`` occurs in this field of paper ``number``."""
        if isinstance(term, Word):
            counts = self._stem_counts.get(number)
            if counts is None:
                counts = self._stem_counts[number] = Counter(self.stems[number])
            return counts[term.stem]
        if isinstance(term, Phrase):
            return self.phrase_count(number, term.stems)
        norm_counts = self._norm_counts.get(number)
        if norm_counts is None:
            norm_counts = self._norm_counts[number] = Counter(self.norms[number])
        return sum(norm_counts.get(norm, 0) for norm in self._prefixed(term.prefix))

    def _prefixed(self, prefix: str) -> list[str]:
        """The words of this chunk starting with ``prefix`` (from the sorted vocabulary)."""
        found = self._prefix_words.get(prefix)
        if found is None:
            self._norm_index()
            vocabulary = self._sorted_norms
            index = bisect.bisect_left(vocabulary, prefix)
            found = []
            while index < len(vocabulary) and vocabulary[index].startswith(prefix):
                found.append(vocabulary[index])
                index += 1
            self._prefix_words[prefix] = found
        return found


class _TermBits(dict[int, int]):
    """Term id -> papers of the chunk where the term occurs, computed on first lookup."""

    def __init__(self, chunk: _Chunk, catalog: Catalog) -> None:
        super().__init__()
        self.chunk = chunk
        self.catalog = catalog

    def __missing__(self, term_id: int) -> int:
        term = self.catalog.terms[term_id]
        chunk = self.chunk
        pairs = self.catalog.phrase_pairs
        if isinstance(term, Upvotes):
            bits = chunk.upvote_bits(term)
        elif term.field is not None:
            bits = chunk.field_index(term.field).bits(term, pairs)
        else:
            fields = chunk.fields
            bits = fields["title"].bits(term, pairs) | fields["abstract"].bits(term, pairs)
        self[term_id] = bits
        return bits


@dataclass
class _Chunk:
    keys: list[Hashable] = field(default_factory=list)
    fields: dict[Field, _FieldIndex] = field(
        default_factory=lambda: {"title": _FieldIndex(), "abstract": _FieldIndex()}
    )
    authors: list[tuple[str, ...]] = field(default_factory=list)
    categories: list[tuple[str, ...]] = field(default_factory=list)
    upvotes: list[int | None] = field(default_factory=list)
    day_ranks: list[int | None] = field(default_factory=list)  # 1 = its day's most upvoted

    @property
    def all_papers(self) -> int:
        return (1 << len(self.keys)) - 1

    def upvote_bits(self, test: Upvotes) -> int:
        """The papers of this chunk passing the upvote ``test``."""
        found = 0
        for number, (upvotes, rank) in enumerate(zip(self.upvotes, self.day_ranks, strict=True)):
            if upvotes is not None and passes(test, upvotes, rank):
                found |= 1 << number
        return found

    def field_index(self, name: Field) -> _FieldIndex:
        """The index of field ``name``; author names and categories are indexed on first use."""
        index = self.fields.get(name)
        if index is None:
            index = _FieldIndex()
            if name == "author":
                for number, authors in enumerate(self.authors):
                    words = author_words(authors)
                    index.add_words(number, words, words)  # names match unstemmed
            else:
                for number, categories in enumerate(self.categories):
                    index.add_words(number, *category_words(categories))
            # Stored only once complete: the index cache is shared between threads.
            self.fields[name] = index
        return index


@dataclass
class PaperIndex(Generic[P]):
    """A batch of papers analyzed once for matching, in chunks of at most CHUNK_SIZE."""

    chunks: list[_Chunk] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(chunk.keys) for chunk in self.chunks)


def passes(test: Upvotes, upvotes: int, rank: int | None) -> bool:
    """Whether a paper with ``upvotes`` (ranked ``rank`` in its day) passes ``test``."""
    value = test.value
    if test.test == ">=":
        return upvotes >= value
    if test.test == ">":
        return upvotes > value
    if test.test == "<=":
        return upvotes <= value
    if test.test == "<":
        return upvotes < value
    return rank is not None and rank <= value


def day_ranks(papers: Mapping[P, PaperText]) -> dict[P, int]:
    """Each paper with an upvote count and a day: its place among that day's papers, most
    upvoted first, ties to the lower key (an int key: a paper id; else the earlier given)."""
    by_day: dict[date, list[tuple[int, int, int, P]]] = {}
    for position, (key, paper) in enumerate(papers.items()):
        if paper.upvotes is not None and paper.day is not None:
            tie = key if isinstance(key, int) else position
            by_day.setdefault(paper.day, []).append((-paper.upvotes, tie, position, key))
    ranks: dict[P, int] = {}
    for entries in by_day.values():
        entries.sort(key=lambda entry: entry[:3])
        ranks.update((entry[3], rank) for rank, entry in enumerate(entries, start=1))
    return ranks


def index_papers(
    papers: Mapping[P, PaperText | tuple[str, str]], *, words: WordTable | None = None
) -> PaperIndex[P]:
    """``papers`` (key -> PaperText) tokenized, normalized, stemmed and indexed once; a plain
    ``(title, abstract)`` pair reads as a paper without authors or categories. ``words`` is
    the word table to look words up in (the MatchCache's; by default one of this call's)."""
    words = words if words is not None else WordTable()
    index: PaperIndex[P] = PaperIndex()
    chunk = _Chunk()
    texts = {
        key: text if isinstance(text, PaperText) else PaperText(*text)
        for key, text in papers.items()
    }
    ranks = day_ranks(texts)
    for key, paper in texts.items():
        if len(chunk.keys) == CHUNK_SIZE:
            index.chunks.append(chunk)
            chunk = _Chunk()
        number = len(chunk.keys)
        chunk.keys.append(key)
        chunk.fields["title"].add(number, paper.title, words)
        chunk.fields["abstract"].add(number, paper.abstract, words)
        chunk.authors.append(paper.authors)
        chunk.categories.append(paper.categories)
        chunk.upvotes.append(paper.upvotes)
        chunk.day_ranks.append(ranks.get(key))
    if chunk.keys:
        index.chunks.append(chunk)
    return index


def match_profiles(profiles: ProfileSet[K], papers: PaperIndex[P]) -> MatchResult[K, P]:
    """Every compiled profile run against every indexed paper: the papers each one matches,
    with scores and hits available per pair."""
    found: list[dict[K, int]] = []
    term_bits: list[_TermBits] = []
    catalog = profiles.catalog
    shapes = catalog.shapes
    for chunk in papers.chunks:
        bits = _TermBits(chunk, catalog)
        term_bits.append(bits)
        everything = chunk.all_papers
        matched: dict[K, int] = {}
        for shape_id, (keys, slots) in profiles.groups.items():
            results = shapes[shape_id].run(bits, slots, everything)
            matched.update({key: hit for key, hit in zip(keys, results, strict=True) if hit})
        found.append(matched)
    return MatchResult(profiles, papers, found, term_bits)
