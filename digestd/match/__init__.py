"""Matching papers against subscribers' keyword queries; pure code, no I/O.

Compile the queries once (:func:`compile_profiles`; :func:`compile_query` checks one and
raises :class:`digestd.errors.QueryError`), index the run's papers once (:func:`index_papers`),
then :func:`match_profiles` says which papers each query matches, with a score and the hits
(term, field, count) that explain each choice; :func:`highlight` marks those hits in a title or
abstract, :func:`hit_labels` names the authors and categories they found. A paper is read as a
:class:`PaperText` (title, abstract, authors, categories). The query language is described in
:mod:`digestd.match.query`, the tokenization rules in :mod:`digestd.match.text`, author names
and categories in :mod:`digestd.match.fields`, the engine in :mod:`digestd.match.engine`.
A :class:`MatchCache` keeps the compiled queries and the latest indexes between runs; its
owner is the runtime (digestd.runtime).
"""

from digestd.match.cache import MatchCache
from digestd.match.compile import CompiledProfile, ProfileSet, compile_profiles
from digestd.match.engine import PaperIndex, index_papers, match_profiles
from digestd.match.fields import PaperText, hit_labels
from digestd.match.hits import Hit, PaperMatch, highlight, score_hits
from digestd.match.query import CompiledQuery, compile_query
from digestd.match.results import MatchResult

__all__ = [
    "CompiledProfile",
    "CompiledQuery",
    "Hit",
    "MatchCache",
    "MatchResult",
    "PaperIndex",
    "PaperMatch",
    "PaperText",
    "ProfileSet",
    "compile_profiles",
    "compile_query",
    "highlight",
    "hit_labels",
    "index_papers",
    "match_profiles",
    "score_hits",
]
