"""The keyword query language: query text -> validated AST (see :mod:`digestd.match.nodes`).

Grammar (``AND``, ``OR``, ``NOT`` are operators only in upper case)::

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*         adjacent clauses are ANDed
    unary   := ("NOT" | "-") unary | primary  "-" only directly before a clause: -llm, -(a b)
    primary := [field ":"] (word | word"*" | '"' phrase '"' | "(" or ")") | upvotes
    field   := "title" | "abstract" | "author" | "cat"
                                              before a group it applies to every term inside
    upvotes := "upvotes:" (">=" | ">" | "<=" | "<" | "top" | "") number

Words and phrases are tokenized like paper text (see :mod:`digestd.match.text`) and match by
stem. A bare word with inner punctuation, such as ``text-to-sql`` or ``gpt-4``, is the phrase
of its parts (``"text to sql"``): a choice, because that is what a user typing it means.
Quotes do not turn stemming off. ``word*`` matches normalized, unstemmed tokens starting with
``word``; ``*`` anywhere else in a bare word is an error. A term without a field matches the
title and the abstract. Field names are case-insensitive; a term takes one field prefix, and
``abstract:`` inside ``title:(...)`` (or any other field inside another) is an error (it
could never match). A ``-`` standing alone (``a - b``) is an error rather than a guess. A
query must have a positive term: one that could match a paper other than through negation.

``author:`` matches the words of one author's name, folded like text (``author:muller``
finds Müller, ``author:loken`` finds Løken) but never stemmed (``author:river`` does not find
Rivers). Names are tokenized like text, so ``Jean-Pierre`` is the two words ``jean pierre``
(``author:jean-pierre`` and ``author:"jean pierre"`` find both spellings) and an initial is a
one-letter word (``author:"y lecun"`` finds "Y. LeCun", not "Yann LeCun"). A phrase lies within
one author's name: ``author:"lecun yoshua"`` never joins the end of one name to the next.

``cat:`` matches arXiv categories, case-insensitively, read whole (dots and hyphens are part
of the name): ``cat:cs.CL`` is that category; a name without a dot is an archive and also
matches its subject classes (``cat:cs`` finds cs.AI and cs.LG, ``cat:astro-ph`` finds
astro-ph and astro-ph.GA, but ``cat:math`` does not find math-ph, another archive); a trailing
``*`` is a prefix of the whole name (``cat:cs.*``, ``cat:hep-*``).

``upvotes:`` tests a paper's upvote count (Hugging Face's, as last fetched): ``upvotes:>=10``,
``upvotes:>10``, ``upvotes:<=10``, ``upvotes:<10``; a bare number means at least that many
(``upvotes:10`` is ``upvotes:>=10``). ``upvotes:top10`` holds for the ten most upvoted papers
of the paper's own day among the papers matched together (a digest's candidates, a feed's
papers), ties going to the paper stored first. A paper without an upvote count (its sources
do not count them) passes no test, ``upvotes:<5`` included. A test is a clause like any other
(``cat:cs.CL upvotes:>=10``, ``NOT upvotes:<3``) and a positive term on its own; it cannot be
put under another field (``title:(upvotes:>=3)`` is an error).

Limits keep parsing and evaluation (both recursive) far from Python's recursion limit: a
query is at most ``MAX_QUERY_LENGTH`` characters, and parentheses and negations (``NOT``,
``-``) together nest at most ``MAX_NESTING`` levels. Long flat queries are fine: ``AND`` and
``OR`` are n-ary, so ``a OR b OR ... OR z`` is one node, not a chain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NoReturn

from digestd.errors import QueryError
from digestd.match.lexer import Lexeme, Lexer
from digestd.match.nodes import (
    TERM_TYPES,
    And,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    Upvotes,
    Word,
    in_field,
    phrase_or_word,
)
from digestd.match.text import Field

__all__ = [
    "MAX_NESTING",
    "MAX_QUERY_LENGTH",
    "And",
    "CompiledQuery",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "Term",
    "Upvotes",
    "Word",
    "compile_query",
    "parse_query",
    "phrase_or_word",
    "positive_terms",
]


@dataclass(frozen=True)
class CompiledQuery:
    """A parsed and validated query, ready to match; ``terms`` are its positive terms in order."""

    text: str
    root: Node
    terms: tuple[Term, ...]


MAX_QUERY_LENGTH = 2000
MAX_NESTING = 32


_CLAUSE_STARTS = {"term", "lparen", "not", "minus", "field"}


class _Parser:
    def __init__(self, text: str, lexemes: list[Lexeme]) -> None:
        self.text = text
        self.lexemes = lexemes
        self.index = 0
        self.depth = 0  # open parentheses and negations around the current position

    def error(self, message: str, position: int) -> NoReturn:
        raise QueryError(message, query=self.text, position=position)

    def peek(self) -> Lexeme | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def nest(self, lexeme: Lexeme) -> None:
        """Enter one more level of nesting at ``lexeme``; refused past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error(
                f"query nests deeper than {MAX_NESTING} levels of parentheses and negations",
                lexeme.start,
            )

    def advance(self) -> Lexeme:
        lexeme = self.lexemes[self.index]
        self.index += 1
        return lexeme

    def parse(self) -> Node:
        if not self.lexemes:
            self.error("empty query", 0)
        node = self.or_(None)
        leftover = self.peek()
        if leftover is not None:  # only a ')' can stop the grammar early
            self.error("unbalanced parenthesis: ')' has no matching '('", leftover.start)
        return node

    def or_(self, after: Lexeme | None) -> Node:
        children = [self.and_(after)]
        while (lexeme := self.peek()) is not None and lexeme.kind == "or":
            children.append(self.and_(self.advance()))
        return _flatten(Or, children)

    def and_(self, after: Lexeme | None) -> Node:
        children = [self.unary(after)]
        while (lexeme := self.peek()) is not None:
            if lexeme.kind == "and":
                children.append(self.unary(self.advance()))
            elif lexeme.kind in _CLAUSE_STARTS:
                children.append(self.unary(None))
            else:
                break
        return _flatten(And, children)

    def unary(self, after: Lexeme | None) -> Node:
        lexeme = self.peek()
        if lexeme is not None and lexeme.kind in ("not", "minus"):
            self.advance()
            self.nest(lexeme)
            child = self.unary(lexeme)
            self.depth -= 1
            return Not(child, start=lexeme.start)
        return self.primary(after)

    def primary(self, after: Lexeme | None) -> Node:
        lexeme = self.peek()
        if lexeme is None or lexeme.kind not in ("term", "lparen", "field"):
            self.missing_term(after, lexeme)
        self.advance()
        if lexeme.term is not None:
            return lexeme.term
        if lexeme.kind == "field":
            following = self.peek()
            if following is None or following.kind not in ("term", "lparen"):
                self.error(
                    f"{lexeme.label} must be directly followed by a word, phrase or group",
                    lexeme.start,
                )
            assert lexeme.field is not None
            return self.restrict(self.primary(lexeme), lexeme.field, start=lexeme.start)
        closing = self.peek()
        if closing is not None and closing.kind == "rparen":
            self.error("empty parentheses", lexeme.start)
        self.nest(lexeme)
        node = self.or_(lexeme)
        if self.peek() is None:
            self.error("unbalanced parenthesis: '(' is never closed", lexeme.start)
        self.advance()
        self.depth -= 1
        return node

    def missing_term(self, after: Lexeme | None, found: Lexeme | None) -> NoReturn:
        if after is not None and after.kind != "lparen":
            self.error(f"{after.label} needs a term after it", after.start)
        if found is None:
            # Only reachable right after '(': an empty query never reaches the grammar.
            self.error("unbalanced parenthesis: '(' is never closed", after.start if after else 0)
        if found.kind == "rparen":
            self.error("unbalanced parenthesis: ')' has no matching '('", found.start)
        self.error(f"{found.label} needs a term before it", found.start)

    def restrict(self, node: Node, field: Field, *, start: int) -> Node:
        """``node`` with every term limited to ``field``; ``start`` is where the term begins."""
        if isinstance(node, TERM_TYPES):
            if node.field is not None and node.field != field:
                self.error(f"'{node.field}:' inside '{field}:' can never match", node.start)
            assert not isinstance(node, Upvotes)  # its field is always "upvotes"
            return in_field(node, field, start=start)
        if isinstance(node, Not):
            return Not(self.restrict(node.child, field, start=node.child.start), start=node.start)
        children = tuple(self.restrict(c, field, start=c.start) for c in node.children)
        return dataclasses.replace(node, children=children)


def _flatten(kind: type[And] | type[Or], children: list[Node]) -> Node:
    if len(children) == 1:
        return children[0]
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, kind) else (child,))
    return kind(tuple(flat), start=children[0].start)


def _first_negative_only(node: Node) -> Node | None:
    """The part of ``node`` that makes it match only through negation, or None if positive."""
    if isinstance(node, TERM_TYPES):
        return None
    if isinstance(node, Not):
        return node
    culprits = [_first_negative_only(child) for child in node.children]
    if isinstance(node, And):
        return None if None in culprits else culprits[0]
    return next((culprit for culprit in culprits if culprit is not None), None)


def positive_terms(node: Node) -> list[Term]:
    """The terms of ``node`` outside any negation, in query order."""
    if isinstance(node, TERM_TYPES):
        return [node]
    if isinstance(node, Not):
        return []
    return [term for child in node.children for term in positive_terms(child)]


def parse_query(text: str) -> Node:
    """The AST of ``text``; raises QueryError on a syntax error or when no term is positive."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"query is longer than {MAX_QUERY_LENGTH} characters",
            query=text,
            position=MAX_QUERY_LENGTH,
        )
    root = _Parser(text, Lexer(text).run()).parse()
    culprit = _first_negative_only(root)
    if culprit is not None:
        raise QueryError(
            "query has no positive term (it could match papers only through what it excludes)",
            query=text,
            position=culprit.start,
        )
    return root


def compile_query(text: str) -> CompiledQuery:
    """``text`` parsed and validated once, ready to match any number of papers."""
    root = parse_query(text)
    return CompiledQuery(text=text, root=root, terms=tuple(dict.fromkeys(positive_terms(root))))
