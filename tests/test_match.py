"""Matching, hits, scoring and highlighting, on hand-made papers and on the real sample dump."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digestd.match import Hit, PaperMatch, compile_query, highlight
from digestd.match.text import normalize, tokenize
from tests.support.matching import engine_match, engine_match_all

Paper = tuple[str, str]

SAMPLE_DUMP = Path(__file__).resolve().parent.parent / "digestd" / "data" / "sample-mar14.txt"


def matches(query: str, title: str, abstract: str = "") -> bool:
    compile_query(query)  # a bad query raises here
    return engine_match(query, title, abstract) is not None


def match_of(query: str, title: str, abstract: str = "") -> PaperMatch:
    compile_query(query)
    match = engine_match(query, title, abstract)
    assert match is not None
    return match


# --- one test per rule of the query language ---------------------------------------------


@pytest.mark.parametrize("title", ["A model", "Two models", "Modeling text", "Modelling text"])
def test_words_match_by_stem(title: str) -> None:
    assert matches("model", title)
    assert matches("modeling", title)


def test_words_match_whole_words_only() -> None:
    assert not matches("model", "Remodeled kitchens")
    assert not matches("art", "State-of-the-artwork")


@pytest.mark.parametrize(
    "title", ["A naive approach", "A naïve approach", "A nai\u0308ve approach"]
)
def test_accents_are_folded(title: str) -> None:
    assert matches("naïve", title)
    assert matches("naive", title)


# Letters that carry no decomposable accent, each with what a reader types for it.
UNDECOMPOSABLE = [
    ("Søren", "Soren"),
    ("Łukasz", "Lukasz"),
    ("Œuvre", "Oeuvre"),
    ("Cæsar", "Caesar"),
    ("Straße", "Strasse"),
    ("Đorđević", "Dordevic"),
    ("Þórður", "Thordur"),
    ("Yıldız", "Yildiz"),
    ("SØREN", "soren"),
]


@pytest.mark.parametrize(("written", "typed"), UNDECOMPOSABLE)
def test_letters_that_do_not_decompose_are_folded_both_ways(written: str, typed: str) -> None:
    # The paper spells the name one way, the query the other, in both directions and in the
    # title, the abstract, a phrase and a prefix.
    assert matches(typed, f"Work by {written} et al.")
    assert matches(written, f"Work by {typed} et al.")
    assert matches(f"abstract:{typed}", "A title", f"As {written} showed.")
    assert matches(f'"{typed} et al"', f"Work by {written} et al.")
    assert matches(f"{typed[:3]}*", f"Work by {written}")
    assert not matches(typed, "Work by someone else")


def test_case_is_ignored() -> None:
    assert matches("LLM", "llm agents")
    assert matches("llm", "LLM Agents")


def test_phrase_needs_its_words_in_order_and_adjacent() -> None:
    assert matches('"language model"', "Large Language Models")
    assert not matches('"language model"', "Models of language")
    assert not matches('"language model"', "Language and model")
    assert not matches('"language model"', "Language", "Models")  # not across fields


@pytest.mark.parametrize("query", ['"text-to-sql"', '"text to sql"', "text-to-sql", "Text-to-SQL"])
@pytest.mark.parametrize("title", ["Robust Text-to-SQL", "From text to SQL", "text_to_sql"])
def test_text_to_sql_spellings_are_the_same_phrase(query: str, title: str) -> None:
    assert matches(query, title)
    assert not matches(query, "SQL to text")


def test_adjacent_clauses_are_anded() -> None:
    assert matches("graph neural", "Neural nets on a graph")
    assert not matches("graph neural", "Neural nets")


def test_or() -> None:
    assert matches("graph OR vision", "Vision transformers")
    assert matches("graph OR vision", "Graph transformers")
    assert not matches("graph OR vision", "Speech transformers")


def test_not_and_leading_minus_exclude() -> None:
    for query in ("transformer NOT vision", "transformer -vision"):
        assert matches(query, "Speech transformers")
        assert not matches(query, "Vision transformers")
        assert not matches(query, "Transformers", "for vision")


def test_parentheses_group() -> None:
    assert matches("(graph OR vision) transformer", "Vision transformers")
    assert not matches("(graph OR vision) transformer", "Vision")
    assert not matches("transformer -(graph OR vision)", "Graph transformers")


def test_and_binds_tighter_than_or_and_not_tightest() -> None:
    assert matches("graph neural OR vision", "Vision")
    assert not matches("graph neural OR vision", "Graph")
    assert matches("NOT graph neural", "Neural")  # (NOT graph) AND neural
    assert not matches("NOT graph neural", "Graph neural")


def test_field_prefix_restricts_a_term() -> None:
    assert matches("title:graph", "Graph nets", "vision")
    assert not matches("title:graph", "Vision nets", "graph")
    assert matches("abstract:graph", "Vision nets", "graph")
    assert matches('abstract:"graph net"', "Vision", "graph nets")
    assert not matches("abstract:gra*", "Graph", "vision")


def test_field_prefix_applies_to_a_group() -> None:
    query = "title:(graph OR vision) -title:(survey)"
    assert matches(query, "Vision nets", "a survey of graph")
    assert not matches(query, "Speech nets", "graph vision")
    assert not matches(query, "A survey of vision nets")


def test_prefix_matches_unstemmed_normalized_tokens() -> None:
    assert matches("diffus*", "Diffusion models")
    assert matches("diffus*", "Diffusers")
    assert matches("DIFFUS*", "diffusion")
    assert matches("naïv*", "Naivety")
    assert matches("modell*", "Modelling")
    assert not matches("modell*", "Models")
    assert not matches("diffus*", "Confusion of a diff")


def test_lower_case_or_is_an_ordinary_word() -> None:
    assert not matches("graph or vision", "Vision transformers")
    assert matches("graph or vision", "Graph or vision?")


def test_hits_name_the_terms_per_field_with_counts() -> None:
    match = match_of("model -survey diffus*", "Diffusion models", "A model; models; diffusers")
    assert match.hits == (
        Hit("model", "title", 1),
        Hit("diffus*", "title", 1),
        Hit("model", "abstract", 2),
        Hit("diffus*", "abstract", 1),
    )
    assert match.terms == ("model", "diffus*")


def test_hits_exclude_negated_terms_and_failed_branches() -> None:
    match = match_of("graph (neural -vision) OR (graph speech)", "Graph neural nets", "no audio")
    assert {hit.term for hit in match.hits} == {"graph", "neural"}
    match = match_of("(graph vision) OR neural", "Graph neural nets")
    assert match.terms == ("neural",)
    match = match_of("title:graph NOT abstract:vision", "Graph nets", "for speech, not images")
    assert match.hits == (Hit("graph", "title", 1),)


def test_phrase_and_word_hits_display_as_written_for_a_reader() -> None:
    match = match_of('Text-to-SQL "Large Language"', "Large language models for text-to-SQL")
    assert match.terms == ('"text to sql"', '"large language"')


def test_title_hits_outscore_abstract_hits() -> None:
    in_title = match_of("graph", "Graph nets", "We study nets.")
    in_abstract = match_of("graph", "Nets", "We study graph nets.")
    assert in_title.score > in_abstract.score


def test_score_is_weighted_by_field_and_grows_gently_with_count() -> None:
    once = match_of("graph", "", "graph")
    thrice = match_of("graph", "", "graph graph graph")
    both = match_of("graph", "graph", "graph")
    assert once.score == pytest.approx(1.0)
    assert thrice.score == pytest.approx(1.0 + math.log(3))
    assert both.score == pytest.approx(4.0)


def test_repeated_query_term_is_one_hit() -> None:
    match = match_of("graph (graph OR nets)", "Graph nets")
    assert match.hits == (Hit("graph", "title", 1), Hit("nets", "title", 1))


def test_match_papers_returns_only_queries_and_papers_with_matches() -> None:
    papers = {
        "p1": ("Graph neural networks", "message passing"),
        "p2": ("Vision transformers", "patches"),
        "p3": ("Speech", "graph of phonemes"),
    }
    queries = {
        "alice": compile_query("graph"),
        "bob": compile_query("vision OR speech"),
        "carol": compile_query("quantum"),
    }
    result = engine_match_all(queries, papers)
    assert list(result) == ["alice", "bob"]
    assert list(result["alice"]) == ["p1", "p3"]
    assert list(result["bob"]) == ["p2", "p3"]
    assert result["alice"]["p1"] == engine_match(queries["alice"], *papers["p1"])


# --- highlight ---------------------------------------------------------------------------


def test_highlight_marks_matched_words() -> None:
    text = "Models, modeling and a model."
    assert highlight(text, [Hit("model", "title", 3)]) == [
        ("Models", True),
        (", ", False),
        ("modeling", True),
        (" and a ", False),
        ("model", True),
        (".", False),
    ]


def test_highlight_marks_a_phrase_as_one_span() -> None:
    text = "Robust Text-to-SQL parsing"
    assert highlight(text, [Hit('"text to sql"', "title", 1)]) == [
        ("Robust ", False),
        ("Text-to-SQL", True),
        (" parsing", False),
    ]


def test_highlight_marks_prefixes_and_merges_overlaps() -> None:
    text = "Diffusion language models"
    hits = [Hit("diffus*", "title", 1), Hit('"language model"', "title", 1), Hit("model", "t", 1)]
    assert highlight(text, hits) == [
        ("Diffusion", True),
        (" ", False),
        ("language models", True),
    ]


def test_highlight_without_hits_is_the_whole_text() -> None:
    assert highlight("Plain title", []) == [("Plain title", False)]
    assert highlight("", [Hit("x", "title", 1)]) == []


def test_highlight_of_a_real_match_marks_what_the_query_found() -> None:
    title = "A Naïve Bayes baseline"
    match = match_of("naive bay*", title)
    marked = [text for text, hit in highlight(title, match.hits) if hit]
    assert marked == ["Naïve", "Bayes"]


# --- properties --------------------------------------------------------------------------


@given(st.text(), st.lists(st.text(max_size=12), max_size=4))
def test_highlight_round_trips_arbitrary_text(text: str, terms: list[str]) -> None:
    words = [text[t.start : t.end] for t in tokenize(text)][:3]
    hits = [Hit(term, "title", 1) for term in [*terms, *words, *(w[:2] + "*" for w in words)]]
    segments = highlight(text, hits)
    assert "".join(segment for segment, _ in segments) == text
    assert all(segment for segment, _ in segments)
    assert all(first or second for (_, first), (_, second) in itertools.pairwise(segments))


@given(st.text())
def test_every_token_of_a_text_finds_its_text(text: str) -> None:
    for token in tokenize(text):
        assert normalize(token.norm) == token.norm
        assert [t.norm for t in tokenize(token.norm)] == [token.norm]
        assert matches(f'"{token.norm}"', text)


VOCABULARY = ["graph", "neural", "vision", "model", "text", "sql", "or", "diffusion"]


def positive_queries() -> st.SearchStrategy[str]:
    atoms = st.one_of(
        st.sampled_from(VOCABULARY),
        st.sampled_from(["models", "Graphs", "naïve", "text-to-sql", "diff*", "mod*"]),
        st.tuples(st.sampled_from(VOCABULARY), st.sampled_from(VOCABULARY)).map(
            lambda pair: f'"{pair[0]} {pair[1]}"'
        ),
        st.tuples(st.sampled_from(["title:", "abstract:"]), st.sampled_from(VOCABULARY)).map(
            "".join
        ),
    )

    def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(inner, inner)
        return st.one_of(
            pair.map(lambda p: f"({p[0]} OR {p[1]})"),
            pair.map(lambda p: f"({p[0]} AND {p[1]})"),
            pair.map(lambda p: f"({p[0]} {p[1]})"),
            pair.map(lambda p: f"({p[0]} -{p[1]})"),
            pair.map(lambda p: f"(NOT {p[1]} {p[0]})"),
            inner.filter(lambda q: "abstract:" not in q).map(lambda q: f"title:({q})"),
        )

    return st.recursive(atoms, combine, max_leaves=6)


WORDS = [*VOCABULARY, "naive", "naïve", "Graphs,", "text-to-SQL", "-", "to", "."]
PAPERS = st.lists(
    st.tuples(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
        st.lists(st.sampled_from(WORDS), min_size=2, max_size=12).map(" ".join),
    ),
    min_size=1,
    max_size=6,
)


def matched(query: str, papers: dict[int, Paper]) -> set[int]:
    result = engine_match_all({"q": compile_query(query)}, papers)
    return set(result.get("q", {}))


@settings(max_examples=200)
@given(positive_queries(), positive_queries(), PAPERS)
@pytest.mark.slow
def test_or_is_the_union_and_and_the_intersection(
    a: str, b: str, texts: list[tuple[str, str]]
) -> None:
    papers = dict(enumerate(texts))
    left, right = matched(a, papers), matched(b, papers)
    assert matched(f"{a} OR {b}", papers) == left | right
    assert matched(f"{a} {b}", papers) == left & right
    assert matched(f"{a} AND {b}", papers) == left & right
    assert matched(f"{a} -{b}", papers) == left - right


@settings(max_examples=200)
@given(positive_queries(), PAPERS)
@pytest.mark.slow
def test_every_match_is_explained_by_hits(text: str, texts: list[tuple[str, str]]) -> None:
    query = compile_query(text)
    for title, abstract in texts:
        match = engine_match(query, title, abstract)
        if match is not None:
            assert match.hits and match.score > 0
            assert list(match.hits) == sorted(set(match.hits), key=match.hits.index)
            assert all(hit.count > 0 and hit.field in ("title", "abstract") for hit in match.hits)


# --- the real sample dump ----------------------------------------------------------------


def sample_papers() -> list[tuple[str, str]]:
    lines = SAMPLE_DUMP.read_text(encoding="utf-8").splitlines()
    body = [line for line in lines[lines.index("Mar 14") + 1 :] if line.strip()]
    return list(zip(body[0::2], body[1::2], strict=True))


@pytest.fixture(scope="module")
def sample() -> dict[str, Paper]:
    return {title: (title, abstract) for title, abstract in sample_papers()}


def test_sample_dump_has_87_papers(sample: dict[str, Paper]) -> None:
    assert len(sample) == 87


def test_sample_text_to_sql_matches_the_titled_papers_first(
    sample: dict[str, Paper],
) -> None:
    titled = {title for title in sample if re.search(r"text[\W_]+to[\W_]+sql", title, re.I)}
    assert len(titled) >= 2
    found = engine_match_all({"q": compile_query('"text-to-sql"')}, sample)["q"]
    assert titled <= set(found)
    ranked = sorted(found, key=lambda title: -found[title].score)
    assert set(ranked[: len(titled)]) == titled
    in_titles = engine_match_all({"q": compile_query('title:"text-to-sql"')}, sample)["q"]
    assert set(in_titles) == titled


def test_sample_bare_and_quoted_spellings_agree(sample: dict[str, Paper]) -> None:
    queries = {q: compile_query(q) for q in ("text-to-sql", '"text to sql"', '"Text-to-SQL"')}
    result = engine_match_all(queries, sample)
    assert len({frozenset(found) for found in result.values()}) == 1


def test_sample_negation_and_or_agree_with_sets(sample: dict[str, Paper]) -> None:
    def found(text: str) -> set[str]:
        return set(engine_match_all({"q": compile_query(text)}, sample).get("q", {}))

    llm, sql = found("llm"), found("sql")
    assert llm and sql
    assert found("llm OR sql") == llm | sql
    assert found("llm -sql") == llm - sql
    assert found("diffus*") >= found("title:diffusion")
