"""Compiling profiles once: each query becomes a shape and the ids of its terms.

A shape is a query's tree with its terms replaced by numbered slots, so ``llm -survey`` and
``gnn -review`` share the shape ``&(T,~T)``. Each shape is turned once into a Python function
that evaluates a whole list of profiles of that shape over bitsets of papers (one list
comprehension, no tree walking), and each term is interned once, so the papers of a term are
found once per run however many profiles use it. Compiled profiles are kept by query text,
so a profile is parsed again only when its text changes, for as long as the catalog lives (a
runtime keeps one in its match cache, digestd.match.cache).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from digestd.errors import QueryError
from digestd.match.nodes import TERM_TYPES, And, Node, Not, Or, Phrase, Term, Word
from digestd.match.query import MAX_QUERY_LENGTH, parse_query
from digestd.match.text import stem

K = TypeVar("K", bound=Hashable)

# A shape's tree: a slot number, or (operator, children) with operator "&", "|" or "~".
ShapeNode: TypeAlias = "int | tuple[str, tuple[ShapeNode, ...]]"
# Evaluates every profile of one shape: (bits of each term id, slots of each profile, all papers).
ShapeRunner = Callable[[Mapping[int, int], Sequence[tuple[int, ...]], int], list[int]]

MAX_CACHED_PROFILES = 2_000_000


@dataclass(frozen=True)
class Shape:
    """A query's tree with numbered term slots, and the function evaluating it in bulk."""

    key: str
    tree: ShapeNode
    run: ShapeRunner


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    """One query, compiled: its shape's id and the term id in each slot."""

    shape: int
    slots: tuple[int, ...]


@dataclass
class ProfileSet(Generic[K]):
    """Compiled profiles grouped by shape, ready to match; queries that did not parse are in
    ``errors``. Term and shape ids refer to ``catalog``."""

    catalog: Catalog
    groups: dict[int, tuple[list[K], list[tuple[int, ...]]]] = field(default_factory=dict)
    compiled: dict[K, CompiledProfile] = field(default_factory=dict)
    errors: dict[K, QueryError] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.compiled)


class Catalog:
    """Every term and shape seen so far, interned, and the compiled profile of each query text.

    A runtime's match cache keeps one for as long as it runs, so compiling is paid once per
    distinct query text; terms and shapes only grow (the match cache starts a new catalog past
    its bound), profiles are dropped past ``MAX_CACHED_PROFILES``.
    """

    def __init__(self) -> None:
        self.terms: list[Term] = []
        self.term_ids: dict[Term, int] = {}
        self.shapes: list[Shape] = []
        self.shape_ids: dict[str, int] = {}
        self.profiles: dict[str, CompiledProfile] = {}
        self.phrase_pairs: set[tuple[str, str]] = set()  # consecutive stems of every phrase
        # The daemon's jobs and the web application compile from different threads: new
        # terms and shapes get their numbers under this lock (a cached profile needs none).
        self._lock = threading.Lock()

    def compile(self, text: str) -> CompiledProfile:
        """The compiled profile of ``text``; raises QueryError when it does not parse."""
        profile = self.profiles.get(text)
        if profile is None:
            with self._lock:
                profile = self.profiles.get(text)
                if profile is None:
                    if len(self.profiles) >= MAX_CACHED_PROFILES:
                        self.profiles.clear()
                    root = _plain_words(text) or parse_query(text)
                    profile = self.profiles[text] = self._compile(root)
        return profile

    def _compile(self, root: Node) -> CompiledProfile:
        slots: list[int] = []
        tree = self._shape_tree(root, slots)
        key = _shape_key(tree)
        shape_id = self.shape_ids.get(key)
        if shape_id is None:
            shape_id = self.shape_ids[key] = len(self.shapes)
            self.shapes.append(Shape(key=key, tree=tree, run=_runner(tree, len(slots))))
        return CompiledProfile(shape=shape_id, slots=tuple(slots))

    def _shape_tree(self, node: Node, slots: list[int]) -> ShapeNode:
        if isinstance(node, TERM_TYPES):
            term_id = self.term_ids.get(node)
            if term_id is None:
                term_id = self.term_ids[node] = len(self.terms)
                self.terms.append(node)
                if isinstance(node, Phrase):
                    self.phrase_pairs.update(itertools.pairwise(node.stems))
            slots.append(term_id)
            return len(slots) - 1
        if isinstance(node, Not):
            return ("~", (self._shape_tree(node.child, slots),))
        operator = "&" if isinstance(node, And) else "|"
        assert isinstance(node, And | Or)
        return (operator, tuple(self._shape_tree(child, slots) for child in node.children))


def compile_profiles(queries: Mapping[K, str], *, catalog: Catalog | None = None) -> ProfileSet[K]:
    """Every query compiled (from ``catalog`` when its text was seen before, else into a new
    catalog) and grouped by shape; a query that does not parse is left out and kept in
    ``errors``."""
    if catalog is None:
        catalog = Catalog()
    profiles: ProfileSet[K] = ProfileSet(catalog)
    groups = profiles.groups
    for key, text in queries.items():
        try:
            compiled = catalog.compile(text)
        except QueryError as exc:
            profiles.errors[key] = exc
            continue
        profiles.compiled[key] = compiled
        group = groups.get(compiled.shape)
        if group is None:
            group = groups[compiled.shape] = ([], [])
        group[0].append(key)
        group[1].append(compiled.slots)
    return profiles


_PLAIN_WORDS = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")


def _plain_words(text: str) -> Node | None:
    """The AST of a query of plain lower-case words (the most common kind), built without the
    parser; None for anything else. Gives exactly what parse_query gives."""
    if len(text) > MAX_QUERY_LENGTH or not _PLAIN_WORDS.fullmatch(text):
        return None
    words = text.split(" ")
    nodes = tuple(Word(word, stem(word)) for word in words)
    return nodes[0] if len(nodes) == 1 else And(nodes)


def _shape_key(tree: ShapeNode) -> str:
    if isinstance(tree, int):
        return "T"
    operator, children = tree
    return operator + "(" + ",".join(_shape_key(child) for child in children) + ")"


def _expression(tree: ShapeNode) -> str:
    """Python source for ``tree`` over ``b`` (term bits), ``s0``… (slots) and ``F`` (all)."""
    if isinstance(tree, int):
        return f"b[s{tree}]"
    operator, children = tree
    if operator == "~":
        return f"(F ^ {_expression(children[0])})"
    if operator == "|":
        return "(" + " | ".join(_expression(child) for child in children) + ")"
    # Within an AND, "x & ~y" drops y's papers without building the complement of y.
    positives = [_expression(c) for c in children if isinstance(c, int) or c[0] != "~"]
    negatives = [_expression(c[1][0]) for c in children if not isinstance(c, int) and c[0] == "~"]
    return "(" + " & ".join(positives or ["F"]) + "".join(f" & ~{n}" for n in negatives) + ")"


def _runner(tree: ShapeNode, slot_count: int) -> ShapeRunner:
    names = ", ".join(f"s{i}" for i in range(slot_count))
    source = f"def run(b, S, F):\n    return [{_expression(tree)} for ({names},) in S]\n"
    namespace: dict[str, ShapeRunner] = {}
    exec(compile(source, f"<shape {_shape_key(tree)}>", "exec"), namespace)
    return namespace["run"]
