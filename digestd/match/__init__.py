"""Matching papers against subscribers' keyword queries; pure code, no I/O.

Analyze each paper once (:func:`analyze_paper`), compile each query once
(:func:`compile_query`, which raises :class:`digestd.errors.QueryError`), then
:func:`match_papers` says which papers each query matches, with a score and the hits
(term, field, count) that explain the choice; :func:`highlight` marks those hits in a
title or abstract. The query language is described in :mod:`digestd.match.query`, the
tokenization rules in :mod:`digestd.match.text`.
"""

from digestd.match.evaluate import Hit, PaperMatch, highlight, match_paper, match_papers
from digestd.match.query import CompiledQuery, compile_query
from digestd.match.text import AnalyzedPaper, analyze_paper

__all__ = [
    "AnalyzedPaper",
    "CompiledQuery",
    "Hit",
    "PaperMatch",
    "analyze_paper",
    "compile_query",
    "highlight",
    "match_paper",
    "match_papers",
]
