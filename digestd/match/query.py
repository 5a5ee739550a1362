"""The keyword query language: query text -> validated AST of frozen dataclasses.

Grammar (``AND``, ``OR``, ``NOT`` are operators only in upper case)::

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*         adjacent clauses are ANDed
    unary   := ("NOT" | "-") unary | primary  "-" only directly before a clause: -llm, -(a b)
    primary := [field ":"] (word | word"*" | '"' phrase '"' | "(" or ")")
    field   := "title" | "abstract"           before a group it applies to every term inside

Words and phrases are tokenized like paper text (see :mod:`digestd.match.text`) and match by
stem. A bare word with inner punctuation, such as ``text-to-sql`` or ``gpt-4``, is the phrase
of its parts (``"text to sql"``): a choice, because that is what a user typing it means.
Quotes do not turn stemming off. ``word*`` matches normalized, unstemmed tokens starting with
``word``; ``*`` anywhere else in a bare word is an error. Field names are case-insensitive;
a term takes one field prefix, and ``abstract:`` inside ``title:(...)`` is an error (it could
never match). A ``-`` standing alone (``a - b``) is an error rather than a guess. A query must
have a positive term: one that could match a paper other than through negation.

Limits keep parsing and evaluation (both recursive) far from Python's recursion limit: a
query is at most ``MAX_QUERY_LENGTH`` characters, and parentheses and negations (``NOT``,
``-``) together nest at most ``MAX_NESTING`` levels. Long flat queries are fine: ``AND`` and
``OR`` are n-ary, so ``a OR b OR ... OR z`` is one node, not a chain.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import NoReturn

from digestd.errors import QueryError
from digestd.match.text import FIELDS, Field, tokenize


@dataclass(frozen=True)
class Word:
    """A single word, matched by stem."""

    norm: str
    stem: str
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return self.norm


@dataclass(frozen=True)
class Phrase:
    """Two or more words matched consecutively, in order, within one field."""

    norms: tuple[str, ...]
    stems: tuple[str, ...]
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return '"' + " ".join(self.norms) + '"'


@dataclass(frozen=True)
class Prefix:
    """Every normalized (unstemmed) token starting with ``prefix``."""

    prefix: str
    field: Field | None = None
    start: int = dataclasses.field(default=0, compare=False)

    @property
    def display(self) -> str:
        """The term as shown to a reader."""
        return self.prefix + "*"


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


Term = Word | Phrase | Prefix
Node = Word | Phrase | Prefix | Not | And | Or


@dataclass(frozen=True)
class CompiledQuery:
    """A parsed and validated query, ready to match; ``terms`` are its positive terms in order."""

    text: str
    root: Node
    terms: tuple[Term, ...]


def phrase_or_word(norms: list[str], stems: list[str], *, start: int = 0) -> Word | Phrase:
    """A Word for one token, a Phrase for several."""
    if len(norms) == 1:
        return Word(norms[0], stems[0], start=start)
    return Phrase(tuple(norms), tuple(stems), start=start)


MAX_QUERY_LENGTH = 2000
MAX_NESTING = 32

_FIELD_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9_]*):")
_WORD_END = re.compile(r'[\s()"]')
_OPERATORS = {"AND": "and", "OR": "or", "NOT": "not"}


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # term, lparen, rparen, and, or, not, minus, field
    start: int
    label: str = ""
    term: Term | None = None
    field: Field | None = None


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lexemes: list[_Lexeme] = []

    def error(self, message: str, position: int) -> NoReturn:
        raise QueryError(message, query=self.text, position=position)

    def run(self) -> list[_Lexeme]:
        text, pos = self.text, 0
        after_field = False
        while pos < len(text):
            char = text[pos]
            if char.isspace():
                pos += 1
            elif char in "()":
                kind = "lparen" if char == "(" else "rparen"
                self.lexemes.append(_Lexeme(kind, pos, f"'{char}'"))
                pos += 1
            elif char == '"':
                pos = self.phrase(pos)
            elif char == "-":
                if pos + 1 == len(text) or text[pos + 1].isspace():
                    self.error("'-' must be directly followed by the term to exclude", pos)
                self.lexemes.append(_Lexeme("minus", pos, "'-'"))
                pos += 1
            else:
                pos, after_field = self.word(pos, after_field=after_field)
                continue
            after_field = False
        return self.lexemes

    def phrase(self, start: int) -> int:
        close = self.text.find('"', start + 1)
        if close < 0:
            self.error("unterminated quote", start)
        tokens = tokenize(self.text[start + 1 : close])
        if not tokens:
            self.error("empty phrase", start)
        term = phrase_or_word([t.norm for t in tokens], [t.stem for t in tokens], start=start)
        self.lexemes.append(_Lexeme("term", start, term=term))
        return close + 1

    def word(self, start: int, *, after_field: bool) -> tuple[int, bool]:
        """Lex the word at ``start``; returns where it ends and whether it was a field prefix."""
        end_match = _WORD_END.search(self.text, start)
        end = end_match.start() if end_match else len(self.text)
        chunk = self.text[start:end]
        if not after_field:
            if chunk in _OPERATORS:
                self.lexemes.append(_Lexeme(_OPERATORS[chunk], start, f"'{chunk}'"))
                return end, False
            field_match = _FIELD_PREFIX.match(chunk)
            if field_match:
                return self.field(start, field_match.group(1)), True
        elif _FIELD_PREFIX.match(chunk):
            self.error("a term takes one field prefix", start)
        self.lexemes.append(_Lexeme("term", start, term=self.bare_term(chunk, start)))
        return end, False

    def field(self, start: int, name: str) -> int:
        label = f"'{name}:'"
        if name.lower() not in FIELDS:
            self.error(f"unknown field {label} (use title: or abstract:)", start)
        after = start + len(name) + 1
        if after == len(self.text) or self.text[after].isspace() or self.text[after] == ")":
            self.error(f"{label} must be directly followed by a word, phrase or group", start)
        if self.text[after] == "-":
            self.error(f"to exclude, put '-' before {label}", after)
        field: Field = "title" if name.lower() == "title" else "abstract"
        self.lexemes.append(_Lexeme("field", start, label, field=field))
        return after

    def bare_term(self, chunk: str, start: int) -> Term:
        star = chunk.find("*")
        if 0 <= star < len(chunk) - 1:
            self.error("'*' is only allowed at the end of a word", start + star)
        body = chunk[:-1] if star >= 0 else chunk
        tokens = tokenize(body)
        if not tokens:
            what = "a prefix" if star >= 0 else "a word"
            self.error(f"{what} needs letters or digits: {chunk!r}", start)
        if star < 0:
            return phrase_or_word([t.norm for t in tokens], [t.stem for t in tokens], start=start)
        if len(tokens) > 1:
            self.error(f"a prefix* must be a single word: {chunk!r}", start)
        return Prefix(tokens[0].norm, start=start)


_CLAUSE_STARTS = {"term", "lparen", "not", "minus", "field"}


class _Parser:
    def __init__(self, text: str, lexemes: list[_Lexeme]) -> None:
        self.text = text
        self.lexemes = lexemes
        self.index = 0
        self.depth = 0  # open parentheses and negations around the current position

    def error(self, message: str, position: int) -> NoReturn:
        raise QueryError(message, query=self.text, position=position)

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def nest(self, lexeme: _Lexeme) -> None:
        """Enter one more level of nesting at ``lexeme``; refused past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error(
                f"query nests deeper than {MAX_NESTING} levels of parentheses and negations",
                lexeme.start,
            )

    def advance(self) -> _Lexeme:
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

    def or_(self, after: _Lexeme | None) -> Node:
        children = [self.and_(after)]
        while (lexeme := self.peek()) is not None and lexeme.kind == "or":
            children.append(self.and_(self.advance()))
        return _flatten(Or, children)

    def and_(self, after: _Lexeme | None) -> Node:
        children = [self.unary(after)]
        while (lexeme := self.peek()) is not None:
            if lexeme.kind == "and":
                children.append(self.unary(self.advance()))
            elif lexeme.kind in _CLAUSE_STARTS:
                children.append(self.unary(None))
            else:
                break
        return _flatten(And, children)

    def unary(self, after: _Lexeme | None) -> Node:
        lexeme = self.peek()
        if lexeme is not None and lexeme.kind in ("not", "minus"):
            self.advance()
            self.nest(lexeme)
            child = self.unary(lexeme)
            self.depth -= 1
            return Not(child, start=lexeme.start)
        return self.primary(after)

    def primary(self, after: _Lexeme | None) -> Node:
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

    def missing_term(self, after: _Lexeme | None, found: _Lexeme | None) -> NoReturn:
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
        if isinstance(node, Word | Phrase | Prefix):
            if node.field is not None and node.field != field:
                self.error(f"'{node.field}:' inside '{field}:' can never match", node.start)
            return dataclasses.replace(node, field=field, start=start)
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
    if isinstance(node, Word | Phrase | Prefix):
        return None
    if isinstance(node, Not):
        return node
    culprits = [_first_negative_only(child) for child in node.children]
    if isinstance(node, And):
        return None if None in culprits else culprits[0]
    return next((culprit for culprit in culprits if culprit is not None), None)


def positive_terms(node: Node) -> list[Term]:
    """The terms of ``node`` outside any negation, in query order."""
    if isinstance(node, Word | Phrase | Prefix):
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
    root = _Parser(text, _Lexer(text).run()).parse()
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
