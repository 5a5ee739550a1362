"""A match run's results: which papers each profile matched, and, on demand, why.

Scores and hits are worked out only for the (profile, paper) pairs someone asks about: in
bulk for ranking (:meth:`MatchResult.scores`), one by one for what a digest shows
(:meth:`MatchResult.explain`). Both give exactly what the straightforward evaluator gives
(tests/support/reference_match.py), and share per-(term, paper) hits across every profile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from digestd.match.compile import ProfileSet, ShapeNode
from digestd.match.hits import Hit, PaperMatch, score_hits
from digestd.match.nodes import Upvotes
from digestd.match.text import FIELDS, TEXT_FIELDS

if TYPE_CHECKING:
    from digestd.match.engine import PaperIndex, _TermBits

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)

_FIELD_RANK: dict[str, int] = {name: rank for rank, name in enumerate(FIELDS)}


class MatchResult(Generic[K, P]):
    """Which papers each profile matched; scores and hits are worked out when asked for."""

    def __init__(
        self,
        profiles: ProfileSet[K],
        index: PaperIndex[P],
        found: list[dict[K, int]],
        term_bits: list[_TermBits],
    ) -> None:
        self._profiles = profiles
        self._index = index
        self._found = found
        self._term_bits = term_bits  # per chunk, as the match computed them
        self._where: dict[P, tuple[int, int]] | None = None
        self._plans: dict[K, _Plan] = {}
        self._hits: dict[tuple[int, int, int], tuple[Hit, ...]] = {}
        self._weights: dict[tuple[int, int], dict[int, tuple[float, ...]]] = {}
        self._term_score_tables: dict[tuple[int, int], dict[int, float]] = {}

    def __contains__(self, key: object) -> bool:
        return any(key in found for found in self._found)

    def matched_keys(self) -> set[K]:
        """The profiles that matched at least one paper."""
        return {key for found in self._found for key in found}

    def count(self, key: K) -> int:
        """How many papers ``key`` matched."""
        return sum(found.get(key, 0).bit_count() for found in self._found)

    def papers(self, key: K) -> list[P]:
        """The papers ``key`` matched, in index order."""
        matched: list[P] = []
        for chunk, found in zip(self._index.chunks, self._found, strict=True):
            bits = found.get(key, 0)
            while bits:
                lowest = bits & -bits
                matched.append(chunk.keys[lowest.bit_length() - 1])  # type: ignore[arg-type]
                bits ^= lowest
        return matched

    def get(self, key: K) -> ProfileMatches[K, P]:
        """The papers ``key`` matched, each with its score and hits (computed on access)."""
        return ProfileMatches(self, key)

    def explain(self, key: K, paper: P) -> PaperMatch | None:
        """The score and hits of ``paper`` for ``key``, or None when it did not match."""
        where = self._locate(key, paper)
        if where is None:
            return None
        hits = self._used_hits(key, *where)
        ranks = self._plan(key).ranks
        ordered = sorted(hits, key=lambda hit: (_FIELD_RANK[hit.field], ranks[hit.term]))
        return PaperMatch(score=score_hits(ordered), hits=tuple(ordered))

    def scores(self, key: K) -> dict[P, float]:
        """The score of every paper ``key`` matched, worked out in one pass."""
        plan = self._plan(key)
        scores: dict[P, float] = {}
        for chunk_number, chunk in enumerate(self._index.chunks):
            numbers = _numbers(self._found[chunk_number].get(key, 0))
            if not numbers:
                continue
            keys: list[P] = chunk.keys  # type: ignore[assignment]
            if plan.direct is None:
                for number in numbers:
                    scores[keys[number]] = score_hits(self._used_hits(key, chunk_number, number))
                continue
            how, term_ids = plan.direct
            if how == "all" and len(term_ids) == 1:
                table = self._term_scores(term_ids[0], chunk_number)
                scores.update({keys[number]: table[number] for number in numbers})
                continue
            # The hits of the terms present (for "all": every positive term is) make the score.
            tables = [self._term_weights(term_id, chunk_number) for term_id in term_ids]
            fsum, chain = math.fsum, itertools.chain.from_iterable
            if how == "all":
                for number in numbers:
                    scores[keys[number]] = fsum(chain([table[number] for table in tables]))
            else:
                for number in numbers:
                    scores[keys[number]] = fsum(
                        chain([table[number] for table in tables if number in table])
                    )
        return scores

    def _term_weights(self, term_id: int, chunk_number: int) -> dict[int, tuple[float, ...]]:
        """For each paper of the chunk holding the term, the weights of its hits."""
        cache_key = (term_id, chunk_number)
        table = self._weights.get(cache_key)
        if table is None:
            table = self._weights[cache_key] = {
                number: tuple(hit.weight for hit in self._term_hits(term_id, chunk_number, number))
                for number in _numbers(self._term_bits[chunk_number][term_id])
            }
        return table

    def _term_scores(self, term_id: int, chunk_number: int) -> dict[int, float]:
        """For each paper of the chunk holding the term, the score of its hits alone."""
        cache_key = (term_id, chunk_number)
        table = self._term_score_tables.get(cache_key)
        if table is None:
            weights = self._term_weights(term_id, chunk_number)
            table = self._term_score_tables[cache_key] = {
                number: math.fsum(parts) for number, parts in weights.items()
            }
        return table

    def _locate(self, key: K, paper: P) -> tuple[int, int] | None:
        """Where ``paper`` is (chunk, number) if ``key`` matched it."""
        if self._where is None:
            self._where = {
                paper_key: (chunk_number, number)  # type: ignore[misc]
                for chunk_number, chunk in enumerate(self._index.chunks)
                for number, paper_key in enumerate(chunk.keys)
            }
        where = self._where.get(paper)
        if where is None or not self._found[where[0]].get(key, 0) >> where[1] & 1:
            return None
        return where

    def _plan(self, key: K) -> _Plan:
        plan = self._plans.get(key)
        if plan is None:
            compiled = self._profiles.compiled[key]
            catalog = self._profiles.catalog
            tree = catalog.shapes[compiled.shape].tree
            displays = [catalog.terms[term_id].display for term_id in compiled.slots]
            ranks: dict[str, int] = {}
            for slot in _positive_slots(tree):
                ranks.setdefault(displays[slot], len(ranks))
            plan = self._plans[key] = _Plan(
                tree=tree,
                slots=compiled.slots,
                ranks=ranks,
                all_used=isinstance(tree, int)
                or (tree[0] == "&" and all(isinstance(child, int) for child in tree[1])),
                distinct=len(set(displays)) == len(displays),
                direct=_direct_terms(
                    tree, compiled.slots, distinct=len(set(displays)) == len(displays)
                ),
            )
        return plan

    def _used_hits(self, key: K, chunk_number: int, number: int) -> Iterable[Hit]:
        """The hits of the terms that made ``key`` match paper ``number``, each once."""
        plan = self._plan(key)
        slots = plan.slots
        if plan.all_used:
            used: Sequence[int] = range(len(slots))
        else:
            bits = self._term_bits[chunk_number]
            used = []
            _walk(plan.tree, [bool(bits[term_id] >> number & 1) for term_id in slots], used)
        hits = itertools.chain.from_iterable(
            self._term_hits(slots[slot], chunk_number, number) for slot in used
        )
        # The same term written twice (or "graph" and "title:graph") is one hit per field.
        return hits if plan.distinct else dict.fromkeys(hits)

    def _term_hits(self, term_id: int, chunk_number: int, number: int) -> tuple[Hit, ...]:
        """The hits of one term in one paper, per field (shared by every profile using it)."""
        cache_key = (term_id, chunk_number, number)
        hits = self._hits.get(cache_key)
        if hits is None:
            term = self._profiles.catalog.terms[term_id]
            chunk = self._index.chunks[chunk_number]
            if isinstance(term, Upvotes):
                passed = self._term_bits[chunk_number][term_id] >> number & 1
                hits = self._hits[cache_key] = (Hit(term.display, "upvotes", 1),) if passed else ()
                return hits
            hits = self._hits[cache_key] = tuple(
                Hit(term.display, name, count)
                for name in ((term.field,) if term.field else TEXT_FIELDS)
                if (count := chunk.field_index(name).count(term, number))
            )
        return hits


@dataclass(frozen=True)
class _Plan:
    """What scoring and explaining one profile needs, worked out once per result."""

    tree: ShapeNode
    slots: tuple[int, ...]
    ranks: dict[str, int]  # display of each positive term -> its place among them
    all_used: bool  # one term, or terms ANDed: every term took part in every match
    distinct: bool  # no two terms show the same, so no hit can come twice
    # For flat shapes, the terms whose hits make the score: "all" of them (a term, terms
    # ANDed, with or without exclusions) or "any" present in the paper (terms ORed).
    direct: tuple[str, tuple[int, ...]] | None


def _direct_terms(
    tree: ShapeNode, slots: tuple[int, ...], *, distinct: bool
) -> tuple[str, tuple[int, ...]] | None:
    if not distinct:
        return None
    if isinstance(tree, int):
        return ("all", (slots[tree],))
    operator, children = tree
    if operator == "&" and all(isinstance(c, int) or c[0] == "~" for c in children):
        return ("all", tuple(slots[c] for c in children if isinstance(c, int)))
    if operator == "|" and all(isinstance(c, int) for c in children):
        return ("any", tuple(slots[c] for c in children if isinstance(c, int)))
    return None


class ProfileMatches(Mapping[P, PaperMatch], Generic[K, P]):
    """One profile's matched papers as a mapping paper -> PaperMatch, explained lazily."""

    def __init__(self, result: MatchResult[K, P], key: K) -> None:
        self._result = result
        self._key = key
        self._papers = result.papers(key)
        self._members = set(self._papers)
        self._cache: dict[P, PaperMatch] = {}
        self._scores: dict[P, float] | None = None

    def __getitem__(self, paper: P) -> PaperMatch:
        match = self._cache.get(paper)
        if match is None:
            if paper not in self._members:
                raise KeyError(paper)
            found = self._result.explain(self._key, paper)
            assert found is not None
            match = self._cache[paper] = found
        return match

    def __contains__(self, paper: object) -> bool:
        return paper in self._members

    def scores(self) -> dict[P, float]:
        """The score of every matched paper, without building their explanations."""
        if self._scores is None:
            self._scores = self._result.scores(self._key)
        return self._scores

    def __iter__(self) -> Iterator[P]:
        return iter(self._papers)

    def __len__(self) -> int:
        return len(self._papers)


def _numbers(bits: int) -> list[int]:
    """The positions of the set bits of ``bits``, lowest first."""
    numbers = []
    while bits:
        lowest = bits & -bits
        numbers.append(lowest.bit_length() - 1)
        bits ^= lowest
    return numbers


def _walk(node: ShapeNode, present: Sequence[bool], used: list[int]) -> bool:
    """Whether ``node`` holds given which slots' terms are ``present``; appends to ``used``
    the slots whose terms made it hold (none under a negation or in a failed branch)."""
    if isinstance(node, int):
        if present[node]:
            used.append(node)
        return present[node]
    operator, children = node
    if operator == "~":
        return not _walk(children[0], present, [])
    if operator == "&":
        collected: list[int] = []
        for child in children:
            if not _walk(child, present, collected):
                return False
        used.extend(collected)
        return True
    matched = False
    for child in children:
        branch: list[int] = []
        if _walk(child, present, branch):
            matched = True
            used.extend(branch)
    return matched


def _positive_slots(node: ShapeNode) -> list[int]:
    if isinstance(node, int):
        return [node]
    operator, children = node
    if operator == "~":
        return []
    return [slot for child in children for slot in _positive_slots(child)]
