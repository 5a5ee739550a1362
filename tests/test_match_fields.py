"""Matching author names (``author:``) and categories (``cat:``): one test per rule, hits and
scores, what a reader is shown, and the jobs feeding them from stored papers."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from digestd.digest import CandidatePaper, QuerySource, plan_digest
from digestd.match import (
    Hit,
    MatchCache,
    PaperMatch,
    PaperText,
    compile_profiles,
    compile_query,
    highlight,
    hit_labels,
    index_papers,
    match_profiles,
)
from tests.support.matching import engine_match
from tests.support.reference_match import analyze_paper, match_paper


def match_of(
    query: str,
    *,
    authors: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    title: str = "A paper",
    abstract: str = "",
) -> PaperMatch | None:
    """The engine's match, checked against the reference evaluator's."""
    compiled = compile_query(query)
    found = engine_match(compiled, title, abstract, authors=authors, categories=categories)
    expected = match_paper(compiled, analyze_paper(title, abstract, authors, categories))
    assert found == expected
    return found


def by(query: str, *authors: str) -> bool:
    return match_of(query, authors=authors) is not None


def in_cat(query: str, *categories: str) -> bool:
    return match_of(query, categories=categories) is not None


# --- author: -----------------------------------------------------------------------------


def test_author_word_matches_any_word_of_a_name() -> None:
    assert by("author:lecun", "Yann LeCun")
    assert by("author:yann", "Léon Bottou", "Yann LeCun")
    assert by("author:LECUN", "yann lecun")
    assert not by("author:lecun", "Yoshua Bengio")
    assert not by("author:lecun")


def test_author_phrase_lies_within_one_name() -> None:
    assert by('author:"yann lecun"', "Yann LeCun")
    assert by('author:"Yann LeCun"', "Léon Bottou", "Yann LeCun")
    assert not by('author:"lecun yann"', "Yann LeCun")
    # The end of one name and the start of the next are not a phrase.
    assert not by('author:"lecun yoshua"', "Yann LeCun", "Yoshua Bengio")
    assert not by('author:"yann lecun"', "Tom Yann", "LeCun Smith")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("author:muller", "Thomas Müller"),
        ("author:müller", "Thomas Muller"),
        ("author:loken", "Anna Løken"),
        ("author:Løken", "Anna Loken"),
        ("author:lukasz", "Łukasz Kaiser"),
        ("author:dordevic", "Đorđe Đorđević"),
        ('author:"soren kierkegaard"', "Søren Kierkegaard"),
        ("author:muller", "Thomas Mu\u0308ller"),  # decomposed accent
    ],
)
def test_author_names_are_accent_and_case_folded_like_words(query: str, name: str) -> None:
    assert by(query, name)


def test_author_names_are_not_stemmed() -> None:
    assert by("author:rivers", "Tom Rivers")
    assert not by("author:river", "Tom Rivers")
    assert not by("author:rivers", "Tom River")
    assert not by("author:model", "Ann Models")
    # Unprefixed, the same word is stemmed as ever (in the title).
    assert match_of("river", title="Rivers of text") is not None


def test_author_prefix() -> None:
    assert by("author:lec*", "Yann LeCun")
    assert by("author:LeC*", "Yann LeCun")
    assert not by("author:lec*", "Alec Radford")  # a prefix starts a word
    match = match_of("author:le*", authors=("Yann LeCun", "Quoc V. Le", "Alec Radford"))
    assert match is not None
    assert match.hits == (Hit("author:le*", "author", 2),)


def test_hyphenated_names_are_two_words() -> None:
    for name in ("Jean-Pierre Serre", "Jean Pierre Serre", "jean–pierre serre"):
        assert by("author:jean-pierre", name)
        assert by('author:"jean pierre serre"', name)
        assert by("author:pierre", name)
    assert not by("author:jean-pierre", "Pierre Jean")
    assert not by("author:jeanpierre", "Jean-Pierre Serre")


def test_initials_are_one_letter_words() -> None:
    assert by("author:lecun", "Y. LeCun")
    assert by('author:"y lecun"', "Y. LeCun")
    assert by('author:"y. lecun"', "Y LeCun")
    assert not by('author:"y lecun"', "Yann LeCun")  # an initial is not expanded
    assert by('author:"quoc v le"', "Quoc V. Le")
    assert by("author:y", "Y. LeCun")


def test_author_terms_match_only_names_and_plain_terms_never_names() -> None:
    assert not by("lecun", "Yann LeCun")
    assert match_of("author:lecun", title="LeCun's networks", abstract="After LeCun") is None
    assert match_of("lecun", title="LeCun's networks", authors=("Yann LeCun",)) is not None


def test_author_groups_and_exclusion() -> None:
    query = "author:(lecun OR bengio) -author:hinton"
    assert by(query, "Yann LeCun")
    assert by(query, "Yoshua Bengio", "Aaron Courville")
    assert not by(query, "Yoshua Bengio", "Geoffrey Hinton")
    assert not by(query, "Geoffrey Hinton")
    assert by("author:(yann lecun)", "Yann LeCun")  # both words, in one name or two
    assert by("author:(yann lecun)", "Yann Dauphin", "Yann LeCun")
    assert by("author:(yann lecun)", "Yann Dauphin", "Ylva LeCun")


# --- cat: --------------------------------------------------------------------------------


def test_category_is_matched_whole_and_case_insensitively() -> None:
    assert in_cat("cat:cs.CL", "cs.CL")
    assert in_cat("cat:cs.cl", "CS.CL")
    assert in_cat("cat:cs.CL", "cs.LG", "cs.CL")  # a cross-list counts as much as the primary
    assert not in_cat("cat:cs.CL", "cs.LG")
    assert not in_cat("cat:cs.C", "cs.CL")
    assert in_cat("cat:hep-th", "hep-th")
    assert not in_cat("cat:hep-th", "hep-ph")
    assert not in_cat("cat:hep", "hep-th")  # hep is not an archive: hep-th is one


def test_an_archive_matches_its_subject_classes() -> None:
    assert in_cat("cat:cs", "cs.AI")
    assert in_cat("cat:cs", "cs.LG")
    assert in_cat("cat:astro-ph", "astro-ph")
    assert in_cat("cat:astro-ph", "astro-ph.GA")
    assert in_cat("cat:physics", "physics.comp-ph")
    assert not in_cat("cat:math", "math-ph")  # another archive
    assert in_cat("cat:math-ph", "math-ph")
    assert not in_cat("cat:cs.CL", "cs")  # a subject class never matches the archive alone


def test_category_prefix_is_a_prefix_of_the_whole_name() -> None:
    assert in_cat("cat:cs.*", "cs.AI")
    assert in_cat("cat:CS.*", "cs.LG")
    assert not in_cat("cat:cs.*", "econ.EM")
    assert in_cat("cat:astro-ph.*", "astro-ph.GA")
    assert not in_cat("cat:astro-ph.*", "astro-ph")
    assert in_cat("cat:astro*", "astro-ph")
    assert in_cat("cat:hep-*", "hep-th")
    assert in_cat("cat:hep-*", "hep-lat")
    assert not in_cat("cat:hep-*", "nucl-th")
    assert in_cat("cat:math*", "math-ph")


def test_category_terms_match_only_categories() -> None:
    assert match_of("cat:cs.CL", title="Results on cs.CL") is None
    assert match_of("cs.CL", title="Results on cs.CL", categories=("cs.CL",)) is not None
    assert match_of("cs", categories=("cs.CL",)) is None


def test_category_groups_and_combinations() -> None:
    assert in_cat("cat:(cs.CL OR cs.LG)", "cs.LG")
    assert not in_cat("cat:(cs.CL OR cs.LG)", "cs.AI")
    assert in_cat("cat:(cs.* -cs.CV)", "cs.AI", "stat.ML")
    assert not in_cat("cat:(cs.* -cs.CV)", "cs.AI", "cs.CV")
    query = 'cat:cs.CL AND "language model" AND NOT author:smith'
    title = "Small language models"
    assert match_of(query, title=title, categories=("cs.CL",), authors=("Ann Jones",))
    assert not match_of(query, title=title, categories=("cs.CL",), authors=("John Smith",))
    assert not match_of(query, title=title, categories=("cs.LG",), authors=("Ann Jones",))
    assert not match_of(query, title="Vision", categories=("cs.CL",), authors=("Ann Jones",))


# --- hits, scores, what a reader sees ----------------------------------------------------


def test_hits_list_title_abstract_author_then_category() -> None:
    match = match_of(
        "cat:cs.* author:lecun network",
        title="Network of networks",
        abstract="A network.",
        authors=("Yann LeCun", "Léon Bottou"),
        categories=("cs.LG", "cs.AI", "stat.ML"),
    )
    assert match is not None
    assert match.hits == (
        Hit("network", "title", 2),
        Hit("network", "abstract", 1),
        Hit("author:lecun", "author", 1),
        Hit("cat:cs.*", "cat", 2),
    )
    assert match.score == pytest.approx(
        3.0 * (1 + math.log(2)) + 1.0 + 2.0 + 0.5 * (1 + math.log(2))
    )


def test_an_author_weighs_two_abstract_hits_and_a_category_half_of_one() -> None:
    author = match_of("author:lecun", authors=("Yann LeCun",))
    category = match_of("cat:cs.CL", categories=("cs.CL",))
    assert author is not None and category is not None
    assert author.score == pytest.approx(2.0)
    assert category.score == pytest.approx(0.5)


def test_hit_labels_name_the_authors_and_categories_found() -> None:
    authors = ("Yann LeCun", "Quoc V. Le", "Alec Radford")
    categories = ("cs.CL", "cs.LG", "stat.ML")
    match = match_of("llm author:le* cat:cs", title="LLM", authors=authors, categories=categories)
    assert match is not None
    assert hit_labels(match.hits, authors=authors, categories=categories) == (
        "llm",
        "author: Yann LeCun",
        "author: Quoc V. Le",
        "cat:cs.CL",
        "cat:cs.LG",
    )
    phrase = Hit('author:"yann lecun"', "author", 1)
    assert hit_labels([phrase], authors=("Yann LeCun", "Yann Dauphin")) == ("author: Yann LeCun",)
    assert hit_labels([Hit("cat:astro-ph.*", "cat", 1)], categories=("astro-ph.GA",)) == (
        "cat:astro-ph.GA",
    )


def test_author_and_category_hits_highlight_nothing() -> None:
    title = "LeCun nets for cs.CL"
    hits = [Hit("author:lecun", "author", 1), Hit("cat:cs.cl", "cat", 1)]
    assert highlight(title, hits) == [(title, False)]


def test_digest_plan_takes_author_and_category_hits() -> None:
    paper = CandidatePaper(
        id=1,
        uid="arxiv:2401.00001",
        title="Small language models",
        abstract="We train language models.",
        url="https://arxiv.org/abs/2401.00001",
        dump_date=date(2026, 3, 14),
        stored_at=datetime(2026, 3, 14, 12, tzinfo=UTC),
        authors=("Yann LeCun",),
        categories=("cs.CL",),
    )
    queries = {"a": 'author:lecun cat:cs.CL "language model"'}
    text = PaperText(paper.title, paper.abstract, paper.authors, paper.categories)
    result = match_profiles(compile_profiles(queries), index_papers({1: text}))
    planned = plan_digest(
        sources=[(QuerySource("query", queries["a"]), result.get("a"))],
        papers={1: paper},
        already_sent=set(),
        max_papers=10,
    )
    assert planned is not None
    (entry,) = planned.entries
    assert entry.matched_terms == ('"language model"', "author: Yann LeCun", "cat:cs.CL")
    assert [text for text, marked in entry.title_segments if marked] == ["language models"]
    assert entry.score == pytest.approx(3.0 + 1.0 + 2.0 + 0.5)


# --- the jobs: stored papers carry their authors and categories --------------------------


def test_match_queries_reads_authors_and_categories_and_reindexes_when_they_change() -> None:
    from digestd.jobs import common
    from digestd.models import Paper

    def paper(pid: int, authors: list[str], categories: list[str]) -> Paper:
        return Paper(
            id=pid,
            uid=f"u{pid}",
            title_key=f"t{pid}",
            title=f"Paper {pid}",
            abstract="graph networks",
            dump_id=1,
            dump_date=date(2026, 3, 14),
            first_seen=datetime.now(UTC),
            authors=authors,
            categories=categories,
        )

    papers = [paper(1, ["Yann LeCun"], ["cs.LG"]), paper(2, ["Yoshua Bengio"], ["stat.ML"])]
    cache = MatchCache()  # the runtime's, in the daemon and the web application
    first = common.match_queries({"a": "author:lecun", "c": "cat:stat"}, papers, cache=cache)
    assert first.papers("a") == [1] and first.papers("c") == [2]
    again = common.match_queries({"a": "author:bengio graph"}, papers, cache=cache)
    assert again._index is first._index
    assert again.papers("a") == [2]
    moved = [paper(1, ["Yann LeCun"], ["cs.LG"]), paper(2, ["Yoshua Bengio"], ["cs.LG"])]
    third = common.match_queries({"c": "cat:cs.LG"}, moved, cache=cache)
    assert third._index is not first._index  # a category changed: indexed again
    assert third.papers("c") == [1, 2]
