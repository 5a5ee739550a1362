"""The query lexer: query text -> lexemes (terms, operators, parentheses, field prefixes).

How a term is read depends on the field it falls under: the field prefix right before it, or
else the field of the innermost group around it (``cat:(cs.CL OR hep-th)``). A category is
read whole, dots and hyphens included; any other term is tokenized like paper text (see
:mod:`digestd.match.text`). The grammar is described in :mod:`digestd.match.query`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from digestd.errors import QueryError
from digestd.match.nodes import Prefix, Term, Upvotes, UpvoteTest, Word, phrase_or_word
from digestd.match.text import FIELDS, Field, tokenize

_FIELD_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9_]*):")
_WORD_END = re.compile(r'[\s()"]')
_OPERATORS = {"AND": "and", "OR": "or", "NOT": "not"}
_FIELD_BY_NAME: dict[str, Field] = {name: name for name in FIELDS if name != "upvotes"}
FIELD_LIST = "title:, abstract:, author:, cat: or upvotes:"
# upvotes:>=10, upvotes:>10, upvotes:<=10, upvotes:<10, upvotes:10 (meaning >=10), upvotes:top10
_UPVOTE_TEST = re.compile(r"(>=|>|<=|<|top|)([0-9]+)", re.IGNORECASE)
_UPVOTE_TESTS: dict[str, UpvoteTest] = {
    "": ">=",  # upvotes:10 is "at least 10", what someone asking for popular papers means
    ">=": ">=",
    ">": ">",
    "<=": "<=",
    "<": "<",
    "top": "top",
}
_UPVOTE_HELP = (
    "upvotes: takes >=, >, <=, < or top and a whole number, such as upvotes:>=10 or upvotes:top10"
)

# arXiv categories: cs.CL, hep-th, astro-ph.GA, physics.comp-ph; a prefix ends in "*".
_CATEGORY = re.compile(r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*")
_CATEGORY_PREFIX = re.compile(r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*[.-]?\*")


@dataclass(frozen=True)
class Lexeme:
    """One unit of a query: a term, an operator, a parenthesis or a field prefix."""

    kind: str  # term, lparen, rparen, and, or, not, minus, field
    start: int
    label: str = ""
    term: Term | None = None
    field: Field | None = None


class Lexer:
    """Cuts one query text into lexemes; :meth:`run` returns them or raises QueryError."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexemes: list[Lexeme] = []
        self.groups: list[Field | None] = []  # each open parenthesis' field, innermost last

    def error(self, message: str, position: int) -> NoReturn:
        """Raise a QueryError about ``message`` at ``position``."""
        raise QueryError(message, query=self.text, position=position)

    def field_here(self, *, after_field: bool) -> Field | None:
        """The field the next term falls under: the prefix just read, else the group's."""
        if after_field:
            return self.lexemes[-1].field
        return self.groups[-1] if self.groups else None

    def run(self) -> list[Lexeme]:
        """The lexemes of the whole text, in order."""
        text, pos = self.text, 0
        after_field = False
        while pos < len(text):
            char = text[pos]
            if char.isspace():
                pos += 1
            elif char in "()":
                if char == "(":
                    self.groups.append(self.field_here(after_field=after_field))
                elif self.groups:  # an unbalanced ')' is the parser's to report
                    self.groups.pop()
                kind = "lparen" if char == "(" else "rparen"
                self.lexemes.append(Lexeme(kind, pos, f"'{char}'"))
                pos += 1
            elif char == '"':
                pos = self.phrase(pos, self.field_here(after_field=after_field))
            elif char == "-":
                if pos + 1 == len(text) or text[pos + 1].isspace():
                    self.error("'-' must be directly followed by the term to exclude", pos)
                self.lexemes.append(Lexeme("minus", pos, "'-'"))
                pos += 1
            else:
                pos, after_field = self.word(pos, after_field=after_field)
                continue
            after_field = False
        return self.lexemes

    def phrase(self, start: int, field: Field | None) -> int:
        """Lex the quoted phrase at ``start`` (a category under ``cat:``); returns its end."""
        close = self.text.find('"', start + 1)
        if close < 0:
            self.error("unterminated quote", start)
        body = self.text[start + 1 : close]
        if field == "cat":
            term = self.category(body, start + 1)
        else:
            tokens = tokenize(body)
            if not tokens:
                self.error("empty phrase", start)
            term = phrase_or_word([t.norm for t in tokens], [t.stem for t in tokens], start=start)
        self.lexemes.append(Lexeme("term", start, term=term))
        return close + 1

    def word(self, start: int, *, after_field: bool) -> tuple[int, bool]:
        """Lex the word at ``start``; returns where it ends and whether it was a field prefix."""
        end_match = _WORD_END.search(self.text, start)
        end = end_match.start() if end_match else len(self.text)
        chunk = self.text[start:end]
        if not after_field:
            if chunk in _OPERATORS:
                self.lexemes.append(Lexeme(_OPERATORS[chunk], start, f"'{chunk}'"))
                return end, False
            field_match = _FIELD_PREFIX.match(chunk)
            if field_match and field_match.group(1).lower() == "upvotes":
                self.lexemes.append(Lexeme("term", start, term=self.upvotes(chunk, start)))
                return end, False
            if field_match:
                return self.field(start, field_match.group(1)), True
        elif _FIELD_PREFIX.match(chunk):
            self.error("a term takes one field prefix", start)
        if self.field_here(after_field=after_field) == "cat":
            term = self.category(chunk, start)
        else:
            term = self.bare_term(chunk, start)
        self.lexemes.append(Lexeme("term", start, term=term))
        return end, False

    def field(self, start: int, name: str) -> int:
        """Lex the field prefix ``name:`` at ``start``; returns where its term starts."""
        label = f"'{name}:'"
        field = _FIELD_BY_NAME.get(name.lower())
        if field is None:
            self.error(f"unknown field {label} (use {FIELD_LIST})", start)
        after = start + len(name) + 1
        if after == len(self.text) or self.text[after].isspace() or self.text[after] == ")":
            self.error(f"{label} must be directly followed by a word, phrase or group", start)
        if self.text[after] == "-":
            self.error(f"to exclude, put '-' before {label}", after)
        self.lexemes.append(Lexeme("field", start, label, field=field))
        return after

    def upvotes(self, chunk: str, start: int) -> Upvotes:
        """The upvote test ``chunk`` (``upvotes:>=10``) states; a bare number means ``>=``."""
        body = chunk[len("upvotes:") :]
        test = _UPVOTE_TEST.fullmatch(body)
        if test is None:
            if not body and self.text[start + len(chunk) : start + len(chunk) + 1] == "(":
                self.error("upvotes: applies to one number, not a group", start)
            self.error(f"{_UPVOTE_HELP}: {chunk!r}", start)
        how, value = _UPVOTE_TESTS[test.group(1).lower()], int(test.group(2))
        if how == "top" and value == 0:
            self.error(f"upvotes:top needs a number of papers above 0: {chunk!r}", start)
        return Upvotes(how, value, start=start)

    def bare_term(self, chunk: str, start: int) -> Term:
        """The word, phrase (inner punctuation) or prefix that ``chunk`` is."""
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

    def category(self, chunk: str, start: int) -> Term:
        """A category (a Word keyed by its lower-case name) or a category prefix."""
        if _CATEGORY.fullmatch(chunk):
            name = chunk.lower()
            return Word(name, name, start=start)
        if _CATEGORY_PREFIX.fullmatch(chunk):
            return Prefix(chunk[:-1].lower(), start=start)
        star = chunk.find("*")
        if 0 <= star < len(chunk) - 1:
            self.error("'*' is only allowed at the end of a category", start + star)
        self.error(
            "a category is letters and digits joined by '.' or '-', such as cs.CL or hep-th,"
            f" optionally ending in '*': {chunk!r}",
            start,
        )
