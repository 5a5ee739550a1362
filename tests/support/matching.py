"""Test helpers: the production engine driven one query or one paper at a time."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from digestd.match import (
    CompiledQuery,
    PaperMatch,
    PaperText,
    compile_profiles,
    index_papers,
    match_profiles,
)

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)


def _text(query: str | CompiledQuery) -> str:
    return query.text if isinstance(query, CompiledQuery) else query


def engine_match_all(
    queries: Mapping[K, str | CompiledQuery], papers: Mapping[P, PaperText | tuple[str, str]]
) -> dict[K, dict[P, PaperMatch]]:
    """Every query against every paper through the engine, materialized like the reference:
    queries and papers without a match are left out, papers in ``papers`` order."""
    profiles = compile_profiles({key: _text(query) for key, query in queries.items()})
    assert not profiles.errors, profiles.errors
    result = match_profiles(profiles, index_papers(papers))
    found = {key: dict(result.get(key).items()) for key in queries}
    return {key: matches for key, matches in found.items() if matches}


def engine_match(
    query: str | CompiledQuery,
    title: str,
    abstract: str = "",
    *,
    authors: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> PaperMatch | None:
    """How the engine matches one query against one paper, or None."""
    paper = PaperText(title, abstract, authors, categories)
    return engine_match_all({"q": query}, {"p": paper}).get("q", {}).get("p")
