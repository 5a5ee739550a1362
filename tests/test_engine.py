"""The indexed engine gives exactly what the reference evaluator gives, pair for pair."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digestd.errors import QueryError
from digestd.match import (
    MatchCache,
    PaperText,
    compile_profiles,
    compile_query,
    index_papers,
    match_profiles,
)
from digestd.match import engine as engine_module
from digestd.match.compile import Catalog
from tests.support.matching import engine_match_all
from tests.support.reference_match import analyze_paper, match_papers

WORDS = ["graph", "graphs", "neural", "network", "model", "models", "modeling", "text", "sql"]
NOISE = ["Graph,", "naïve", "Naive", "text-to-SQL", "-", "of", "the", ".", "Ångström", "x2"]
QUERY_WORDS = [*WORDS, "naive", "angstrom", "x2", "of"]
# Names share words with each other and with the text, so author: and plain words disagree.
AUTHORS = [
    "Yann LeCun",
    "Y. LeCun",
    "Yoshua Bengio",
    "Jean-Pierre Müller",
    "Anna Løken",
    "Tom Rivers",
    "Le Song",
    "Quoc V. Le",
    "Graph Model",
    "Text Neural",
]
NAME_WORDS = ["lecun", "yann", "y", "bengio", "yoshua", "muller", "loken", "river", "rivers"]
NAME_WORDS += ["le", "jean", "pierre", "graph", "text", "neural"]
CATEGORIES = ["cs.CL", "cs.LG", "CS.ai", "hep-th", "astro-ph", "astro-ph.GA", "math.GT"]
CATEGORIES += ["math-ph", "physics.comp-ph", "cs"]
CATEGORY_TERMS = ["cs.CL", "cs.cl", "cs", "cs.*", "cs*", "astro-ph", "astro*", "astro-ph.*"]
CATEGORY_TERMS += ["hep-th", "hep-*", "math", "math-ph", "math.GT", "physics", "graph"]
# Counts near the papers' own (0 to 6), so every test both holds and fails on some.
UPVOTE_TESTS = ["upvotes:>=3", "upvotes:>2", "upvotes:<=1", "upvotes:<5", "upvotes:0"]
UPVOTE_TESTS += ["upvotes:4", "upvotes:<0", "upvotes:top1", "upvotes:top3", "UPVOTES:>=6"]
DAYS = [date(2024, 5, 1), date(2024, 5, 2)]


def author_terms() -> st.SearchStrategy[str]:
    name_word = st.sampled_from(NAME_WORDS)
    return st.one_of(
        name_word,
        st.lists(name_word, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
        st.sampled_from(["le*", "y*", "b*", "jean-pierre", "Müller", "LØKEN", "lec*"]),
    )


def within(field: str, query: str) -> str:
    """``query`` limited to ``field``, unless it names another field (which would be refused):
    then, half the time, refused all the same, so errors are still tried, else left as is."""
    others = [f"{name}:" for name in ("title", "abstract", "author", "cat") if name != field]
    if any(other in query for other in others) and len(query) % 2:
        return query
    return f"{field}:({query})"


def queries() -> st.SearchStrategy[str]:
    word = st.sampled_from(QUERY_WORDS)
    category = st.sampled_from(CATEGORY_TERMS)
    atoms = st.one_of(
        word,
        st.lists(word, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
        st.sampled_from(["mod*", "graph*", "n*", "text-to-sql", "Graphs"]),
        st.tuples(st.sampled_from(["title:", "abstract:"]), word).map("".join),
        author_terms().map(lambda term: f"author:{term}"),
        category.map(lambda term: f"cat:{term}"),
        st.lists(author_terms(), min_size=2, max_size=3).map(
            lambda ts: "author:(" + " OR ".join(ts) + ")"
        ),
        st.lists(category, min_size=2, max_size=3).map(lambda ts: "cat:(" + " ".join(ts) + ")"),
        st.sampled_from(UPVOTE_TESTS),
    )

    def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(inner, inner)
        return st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda qs: "(" + " OR ".join(qs) + ")"),
            pair.map(lambda p: f"({p[0]} {p[1]})"),
            pair.map(lambda p: f"({p[0]} -{p[1]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} (NOT {t[1]} OR {t[2]}))"),
            inner.map(lambda q: within("title", q)),
            inner.map(lambda q: within("author", q)),
        )

    return st.recursive(atoms, combine, max_leaves=7)


def text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS + NOISE), min_size=min_size, max_size=max_size).map(
        " ".join
    )


PAPERS = st.lists(
    st.builds(
        PaperText,
        text(0, 6),
        text(0, 25),
        st.lists(st.sampled_from(AUTHORS), max_size=4).map(tuple),
        st.lists(st.sampled_from(CATEGORIES), max_size=3).map(tuple),
        st.none() | st.integers(min_value=0, max_value=6),
        st.none() | st.sampled_from(DAYS),
    ),
    min_size=1,
    max_size=12,
)


def compilable(texts: list[str]) -> list[str]:
    good = []
    for query in texts:
        try:
            compile_query(query)
        except QueryError:
            continue
        good.append(query)
    return good


def reference(
    queries: dict[int, str], papers: dict[int, PaperText] | dict[int, tuple[str, str]]
) -> dict:  # type: ignore[type-arg]
    compiled = {key: compile_query(query) for key, query in queries.items()}
    return match_papers(compiled, {key: analyze_paper(*paper) for key, paper in papers.items()})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(queries(), min_size=1, max_size=8), PAPERS)
@pytest.mark.slow
def test_engine_equals_reference_evaluator(texts: list[str], paper_texts: list) -> None:  # type: ignore[type-arg]
    good = compilable(texts)
    assume(good)
    queries_by_key = dict(enumerate(good))
    papers = dict(enumerate(paper_texts))
    assert engine_match_all(queries_by_key, papers) == reference(queries_by_key, papers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(queries(), min_size=1, max_size=4), PAPERS)
@pytest.mark.slow
def test_engine_equals_reference_across_chunks(
    monkeypatch_chunk: None,
    texts: list[str],
    paper_texts: list,  # type: ignore[type-arg]
) -> None:
    good = compilable(texts)
    assume(good)
    queries_by_key = dict(enumerate(good))
    papers = dict(enumerate(paper_texts))
    assert engine_match_all(queries_by_key, papers) == reference(queries_by_key, papers)


@pytest.fixture(scope="module")
def monkeypatch_chunk() -> object:
    """Chunks of 3 papers, so a batch spans several chunks."""
    saved = engine_module.CHUNK_SIZE
    engine_module.CHUNK_SIZE = 3
    yield None
    engine_module.CHUNK_SIZE = saved


def test_phrase_with_many_candidates_uses_pairs_and_agrees() -> None:
    # 60 papers hold both words; only every third holds them as the phrase.
    papers = {
        i: ("", "neural network" if i % 3 == 0 else "network of neural graphs") for i in range(60)
    }
    queries_by_key = {"two": '"neural network"', "three": '"network of neural"', "one": "neural"}
    found = engine_match_all(queries_by_key, papers)
    assert set(found["two"]) == {i for i in range(60) if i % 3 == 0}
    assert found == reference(queries_by_key, papers)


def test_phrases_compiled_after_the_index_was_built_still_match() -> None:
    catalog = Catalog()
    papers = {i: ("", "graph neural network" if i % 2 else "neural graph") for i in range(50)}
    index = index_papers(papers)
    first = match_profiles(compile_profiles({"a": '"graph neural"'}, catalog=catalog), index)
    assert first.count("a") == 25
    later = compile_profiles({"b": '"neural network"', "c": '"neural graph"'}, catalog=catalog)
    result = match_profiles(later, index)
    assert result.count("b") == 25
    assert result.count("c") == 25


def test_profiles_are_compiled_once_per_text() -> None:
    catalog = Catalog()
    first = compile_profiles({1: "llm -survey", 2: "gnn -review", 3: "("}, catalog=catalog)
    assert set(first.errors) == {3}
    assert first.compiled[1].shape == first.compiled[2].shape  # one shape, two profiles
    again = compile_profiles({"x": "llm -survey"}, catalog=catalog)
    assert again.compiled["x"] is first.compiled[1]
    assert len(catalog.shapes) == 1
    assert len(catalog.terms) == 4


def test_result_counts_and_lists_papers_in_index_order() -> None:
    papers = {"b": ("Graph models", ""), "a": ("Vision", "graph"), "c": ("Speech", "")}
    result = match_profiles(compile_profiles({"q": "graph"}), index_papers(papers))
    assert result.count("q") == 2
    assert result.papers("q") == ["b", "a"]
    assert result.matched_keys() == {"q"}
    assert "missing" not in result
    assert result.explain("q", "c") is None
    matches = result.get("q")
    assert "c" not in matches
    with pytest.raises(KeyError):
        matches["c"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(queries(), min_size=1, max_size=6), PAPERS)
@pytest.mark.slow
def test_score_without_explanation_is_the_explained_score(
    texts: list[str], paper_texts: list
) -> None:  # type: ignore[type-arg]
    good = compilable(texts)
    assume(good)
    result = match_profiles(
        compile_profiles(dict(enumerate(good))), index_papers(dict(enumerate(paper_texts)))
    )
    for key in result.matched_keys():
        matches = result.get(key)
        for paper in matches:
            explained = result.explain(key, paper)
            assert explained is not None
            assert matches.scores()[paper] == explained.score  # exactly, not approximately
    assert result.explain(0, len(paper_texts)) is None  # a paper not in the batch


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from([*QUERY_WORDS, "x", "0", "models2", "AND", "OR"]), min_size=1, max_size=5
    )
)
def test_plain_word_queries_compile_as_the_parser_would(words: list[str]) -> None:
    from digestd.match.compile import _plain_words

    text = " ".join(words)
    fast = _plain_words(text)
    try:
        expected = compile_query(text).root
    except QueryError:
        assert fast is None
        return
    if text == text.lower():
        assert fast == expected  # the fast path was taken, and agrees
    else:
        assert fast is None  # upper case may be an operator: left to the parser


def test_a_later_run_over_the_same_papers_reuses_their_index() -> None:
    from datetime import UTC, date, datetime

    from digestd.jobs import common
    from digestd.models import Paper

    def paper(pid: int, abstract: str) -> Paper:
        now = datetime.now(UTC)
        return Paper(
            id=pid,
            uid=f"u{pid}",
            title_key=f"t{pid}",
            title=f"Paper {pid}",
            abstract=abstract,
            dump_id=1,
            dump_date=date(2026, 3, 14),
            first_seen=now,
        )

    papers = [paper(1, "graph networks"), paper(2, "vision")]
    cache = MatchCache()  # the runtime's, in the daemon and the web application
    first = common.match_queries({"q": "graph"}, papers, cache=cache)
    second = common.match_queries({"q": "vision", "r": "graph"}, papers, cache=cache)
    assert second._index is first._index  # indexed once, reused
    assert second.papers("q") == [2] and second.papers("r") == [1]
    edited = [paper(1, "vision transformers"), paper(2, "vision")]
    third = common.match_queries({"q": "vision"}, edited, cache=cache)
    assert third._index is not first._index  # a text changed: indexed again
    assert third.papers("q") == [1, 2]
