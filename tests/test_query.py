"""The query parser: the AST it builds, and the errors it reports with their positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digestd.errors import QueryError
from digestd.match import CompiledQuery, compile_query
from digestd.match.query import MAX_NESTING, MAX_QUERY_LENGTH, And, Not, Or, Phrase, Prefix, Word
from digestd.match.text import stem
from tests.support.matching import engine_match


def word(text: str, field: str | None = None) -> Word:
    return Word(text, stem(text), field)  # type: ignore[arg-type]


def root(text: str) -> object:
    return compile_query(text).root


def test_single_word_is_stemmed_and_case_folded() -> None:
    assert root("Models") == Word("models", "model")


def test_adjacent_clauses_are_anded() -> None:
    assert root("graph neural") == And((word("graph"), word("neural")))


def test_explicit_and_equals_implicit_and() -> None:
    assert root("graph AND neural") == root("graph neural")


def test_and_binds_tighter_than_or() -> None:
    assert root("a b OR c") == Or((And((word("a"), word("b"))), word("c")))
    assert root("a OR b c") == Or((word("a"), And((word("b"), word("c")))))


def test_not_binds_tighter_than_and() -> None:
    assert root("NOT a b") == And((Not(word("a")), word("b")))
    assert root("b -a") == And((word("b"), Not(word("a"))))


def test_parentheses_override_precedence() -> None:
    assert root("(a OR b) c") == And((Or((word("a"), word("b"))), word("c")))


def test_lower_case_operators_are_words() -> None:
    assert root("a or b") == And((word("a"), word("or"), word("b")))
    assert root("not a") == And((word("not"), word("a")))


def test_quoted_phrase_is_tokenized_like_paper_text() -> None:
    assert root('"Text-to-SQL"') == Phrase(("text", "to", "sql"), ("text", "to", "sql"))
    assert root('"text-to-sql"') == root('"text to sql"')


def test_bare_word_with_inner_punctuation_is_a_phrase() -> None:
    assert root("text-to-sql") == root('"text to sql"')
    assert root("GPT-4") == Phrase(("gpt", "4"), ("gpt", "4"))


def test_quoted_single_word_is_a_word() -> None:
    assert root('"models"') == root("models")


def test_accents_are_folded() -> None:
    assert root("naïve") == root("naive")
    assert root("Naïve").display == "naive"  # type: ignore[attr-defined]


def test_prefix() -> None:
    assert root("Diffus*") == Prefix("diffus")
    assert root("Diffus*").display == "diffus*"  # type: ignore[attr-defined]


def test_field_prefix_restricts_a_term() -> None:
    assert root("title:llm") == word("llm", "title")
    assert root('abstract:"deep learning"') == Phrase(
        ("deep", "learning"), ("deep", "learn"), "abstract"
    )
    assert root("Title:diff*") == Prefix("diff", "title")


def test_field_prefix_applies_to_every_term_of_a_group() -> None:
    assert root("title:(a OR -b c*)") == Or(
        (word("a", "title"), And((Not(word("b", "title")), Prefix("c", "title"))))
    )


def test_author_terms_match_by_normalized_words_not_stems() -> None:
    assert root("author:Rivers") == Word("rivers", "rivers", "author")
    assert root("author:Müller") == Word("muller", "muller", "author")
    assert root('author:"Yann LeCun"') == Phrase(("yann", "lecun"), ("yann", "lecun"), "author")
    assert root("author:jean-pierre") == root('author:"jean pierre"')
    assert root("author:lec*") == Prefix("lec", "author")
    assert root("Author:(lecun OR bengio)") == Or(
        (Word("lecun", "lecun", "author"), Word("bengio", "bengio", "author"))
    )


def test_category_terms_keep_dots_and_hyphens_and_ignore_case() -> None:
    assert root("cat:cs.CL") == Word("cs.cl", "cs.cl", "cat")
    assert root("CAT:Hep-TH") == Word("hep-th", "hep-th", "cat")
    assert root('cat:"astro-ph.GA"') == Word("astro-ph.ga", "astro-ph.ga", "cat")
    assert root("cat:cs.*") == Prefix("cs.", "cat")
    assert root("cat:hep-*") == Prefix("hep-", "cat")
    assert root("cat:physics.comp-ph") == Word("physics.comp-ph", "physics.comp-ph", "cat")
    assert root("cat:(cs.CL OR -cs.LG cs.*)") == Or(
        (
            Word("cs.cl", "cs.cl", "cat"),
            And((Not(Word("cs.lg", "cs.lg", "cat")), Prefix("cs.", "cat"))),
        )
    )


def test_categories_are_read_whole_only_under_cat() -> None:
    # Outside cat: a dotted word is the phrase of its parts, as before.
    assert root("cat:cs.CL cs.CL") == And(
        (Word("cs.cl", "cs.cl", "cat"), Phrase(("cs", "cl"), ("cs", "cl")))
    )
    assert root("cat:(cs.CL) (cs.CL)") == root("cat:cs.CL cs.CL")


def test_author_and_category_terms_show_their_field() -> None:
    query = compile_query('author:lecun author:"yann lecun" author:le* cat:cs.CL cat:cs.* llm')
    assert [term.display for term in query.terms] == [
        "author:lecun",
        'author:"yann lecun"',
        "author:le*",
        "cat:cs.cl",
        "cat:cs.*",
        "llm",
    ]
    # Every display is itself a query for the same term.
    for term in query.terms:
        assert compile_query(term.display).terms == (term,)


def test_compiled_query_keeps_text_and_is_hashable() -> None:
    query = compile_query("a  OR b")
    assert query.text == "a  OR b"
    assert isinstance(query, CompiledQuery)
    assert hash(query) == hash(compile_query("a  OR b"))
    assert query == compile_query("a  OR b")


def test_compiled_query_lists_positive_terms_once_in_order() -> None:
    query = compile_query("b (a OR b) -c")
    assert [term.display for term in query.terms] == ["b", "a"]


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", 0, "empty query"),
        ("   ", 0, "empty query"),
        ("(a b", 0, "'(' is never closed"),
        ("a (b OR c", 2, "'(' is never closed"),
        ("a b)", 3, "')' has no matching '('"),
        (") a", 0, "')' has no matching '('"),
        ("()", 0, "empty parentheses"),
        ('a "b c', 2, "unterminated quote"),
        ('a ""', 2, "empty phrase"),
        ('a "--"', 2, "empty phrase"),
        ("a OR", 2, "'OR' needs a term after it"),
        ("OR a", 0, "'OR' needs a term before it"),
        ("a AND", 2, "'AND' needs a term after it"),
        ("a AND OR b", 2, "'AND' needs a term after it"),
        ("a (OR b)", 3, "'OR' needs a term before it"),
        ("a NOT", 2, "'NOT' needs a term after it"),
        ("a (NOT)", 3, "'NOT' needs a term after it"),
        ("a -", 2, "'-' must be directly followed"),
        ("a - b", 2, "'-' must be directly followed"),
        ("a -)", 2, "'-' needs a term after it"),
        ("a title:", 2, "'title:' must be directly followed"),
        ("a title: b", 2, "'title:' must be directly followed"),
        ("a (title:)", 3, "'title:' must be directly followed"),
        ("a title:-b", 8, "put '-' before 'title:'"),
        ("a xyz:b", 2, "unknown field 'xyz:'"),
        ("a http://x.org", 2, "unknown field 'http:'"),
        ("title:(abstract:a)", 7, "'abstract:' inside 'title:'"),
        ("title:abstract:a", 6, "one field prefix"),
        ("a & b", 2, "needs letters or digits"),
        ("a *", 2, "needs letters or digits"),
        ("a b*c", 3, "'*' is only allowed at the end"),
        ("a foo-bar*", 2, "single word"),
        ("title:(author:a)", 7, "'author:' inside 'title:'"),
        ("author:(title:a)", 8, "'title:' inside 'author:'"),
        ("cat:(cs.CL author:a)", 11, "'author:' inside 'cat:'"),
        ("author:(a cat:cs)", 10, "'cat:' inside 'author:'"),
        ("cat:(cs.CL OR (title:a))", 15, "'title:' inside 'cat:'"),
        ("author:cat:cs", 7, "one field prefix"),
        ("a cat:", 2, "'cat:' must be directly followed"),
        ("a author: b", 2, "'author:' must be directly followed"),
        ("a cat:-cs", 6, "put '-' before 'cat:'"),
        ("a cat:cs..CL", 6, "a category is letters and digits joined by '.' or '-'"),
        ("a cat:cs.", 6, "a category is letters"),
        ("a cat:-", 6, "put '-' before 'cat:'"),
        ("a cat:cs_CL", 6, "a category is letters"),
        ("a cat:é", 6, "a category is letters"),
        ("a cat:c*s", 7, "'*' is only allowed at the end of a category"),
        ('a cat:"cs CL"', 7, "a category is letters"),
        ("a cat:(cs.CL", 6, "'(' is never closed"),
        ("a author:-x", 9, "put '-' before 'author:'"),
        ("a author:*", 9, "needs letters or digits"),
        (
            "a auteur:x",
            2,
            "unknown field 'auteur:' (use title:, abstract:, author:, cat: or upvotes:)",
        ),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_query(text)
    assert caught.value.position == position
    assert reason in caught.value.reason
    assert caught.value.query == text


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("-llm", 0),
        ("NOT llm", 0),
        ("NOT (a OR b)", 0),
        ("a OR -b", 5),
        ("(-a -b)", 1),
        ("title:(-a)", 7),
        ("--a", 0),
        ("(a -b) OR NOT c", 10),
        ("NOT author:smith", 0),
        ("-cat:cs.*", 0),
        ("cat:(-cs.CL)", 5),
    ],
)
def test_queries_without_positive_term_are_refused(text: str, position: int) -> None:
    with pytest.raises(QueryError, match="no positive term") as caught:
        compile_query(text)
    assert caught.value.position == position


@pytest.mark.parametrize("text", ["a -b", "a NOT (b OR c)", "(a -b) OR c", "a (b OR -c)", "-a b"])
def test_negation_next_to_a_positive_term_is_accepted(text: str) -> None:
    compile_query(text)


def test_error_message_points_at_the_problem_for_a_reader() -> None:
    with pytest.raises(QueryError) as caught:
        compile_query("llm xyz:foo")
    assert str(caught.value) == (
        "unknown field 'xyz:' (use title:, abstract:, author:, cat: or upvotes:) at position 5"
        " of query 'llm xyz:foo'"
    )


QUERY_ALPHABET = st.sampled_from(
    [*'ab()"-*: \t.', "AND", "OR", "NOT", "title:", "abstract:", "xy:", "é", "_", "ß"]
)
QUERY_ALPHABET |= st.sampled_from(["author:", "cat:", "cs.CL", "hep-th"])


@given(st.text())
def test_arbitrary_text_compiles_or_raises_query_error(text: str) -> None:
    try:
        query = compile_query(text)
    except QueryError as error:
        assert 0 <= error.position <= len(text)
    else:
        assert query.text == text
        assert query.terms


@given(st.lists(QUERY_ALPHABET, max_size=20).map("".join))
def test_operator_soup_compiles_or_raises_query_error(text: str) -> None:
    try:
        query = compile_query(text)
    except QueryError as error:
        assert 0 <= error.position < max(len(text), 1)
    else:
        assert query.terms


def assert_refused(text: str, position: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_query(text)
    assert caught.value.position == position
    assert reason in caught.value.reason
    assert caught.value.query == text


DEEP = "query nests deeper than 32 levels"


def test_limits_are_the_documented_ones() -> None:
    assert (MAX_NESTING, MAX_QUERY_LENGTH) == (32, 2000)


@pytest.mark.parametrize("levels", [33, 300])
def test_deep_parentheses_are_refused_at_the_first_paren_too_deep(levels: int) -> None:
    assert_refused("(" * levels + "a" + ")" * levels, MAX_NESTING, DEEP)


@pytest.mark.parametrize("levels", [33, 300])
def test_many_leading_minuses_are_refused_at_the_first_one_too_deep(levels: int) -> None:
    assert_refused("llm " + "-" * levels + "a", 4 + MAX_NESTING, DEEP)


@pytest.mark.parametrize("levels", [33, 300])
def test_many_nots_are_refused_at_the_first_one_too_deep(levels: int) -> None:
    assert_refused("llm " + "NOT " * levels + "a", 4 + 4 * MAX_NESTING, DEEP)


def test_parentheses_and_negations_count_together() -> None:
    text = "llm " + "-(" * 16 + "-a" + ")" * 16  # the 33rd level is the last '-'
    assert_refused(text, text.index("-a"), DEEP)


def test_sibling_groups_do_not_add_up() -> None:
    group = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    compile_query(f"{group} {group} OR {group}")


@pytest.mark.parametrize("text", ["-" * 2000 + "a", "NOT " * 600 + "a", "(" * 2001, "a " * 1001])
def test_over_long_query_is_refused_where_it_exceeds_the_limit(text: str) -> None:
    assert_refused(text, MAX_QUERY_LENGTH, "longer than 2000 characters")


def test_query_of_exactly_the_maximum_length_compiles() -> None:
    text = "a " * (MAX_QUERY_LENGTH // 2)
    assert len(text) == MAX_QUERY_LENGTH
    assert root(text) == And((word("a"),) * (MAX_QUERY_LENGTH // 2))


def test_query_nested_to_the_limit_compiles_and_evaluates() -> None:
    # 16 parentheses and 16 negations: an even number of NOTs, so it means "llm x".
    query = compile_query("llm " + "-(" * 16 + "x" + ")" * 16)
    assert engine_match(query, "LLM x", "") is not None
    assert engine_match(query, "LLM", "y") is None
    parens = compile_query("(" * MAX_NESTING + "llm" + ")" * MAX_NESTING)
    assert parens.root == word("llm")
    match = engine_match(parens, "LLM", "")
    assert match is not None
    assert match.terms == ("llm",)


def test_long_flat_or_compiles_and_matches() -> None:
    words = [f"w{i}" for i in range(250)]
    text = " OR ".join(words)
    assert len(text) <= MAX_QUERY_LENGTH
    query = compile_query(text)
    assert isinstance(query.root, Or)
    assert len(query.root.children) == len(words)
    match = engine_match(query, "w0 and w249", "w200")
    assert match is not None
    assert match.terms == ("w0", "w249", "w200")  # title hits first, then abstract
    assert engine_match(query, "nothing", "here") is None


def test_long_flat_and_compiles_and_matches() -> None:
    words = [f"w{i}" for i in range(400)]
    query = compile_query(" ".join(words))
    assert isinstance(query.root, And)
    assert len(query.root.children) == len(words)
    assert engine_match(query, " ".join(words), "") is not None
    assert engine_match(query, " ".join(words[1:]), "") is None


NESTING_OPENERS = st.sampled_from(["(", "-", "NOT "])


@given(st.lists(NESTING_OPENERS, max_size=2 * MAX_NESTING))
def test_nesting_compiles_up_to_the_limit_and_is_refused_beyond(openers: list[str]) -> None:
    text = "llm " + "".join(openers) + "x" + ")" * openers.count("(")
    if len(openers) <= MAX_NESTING:
        query = compile_query(text)
        matched = engine_match(query, "llm x", "") is not None
        assert matched == (sum(o != "(" for o in openers) % 2 == 0)
    else:
        too_deep = 4 + sum(len(o) for o in openers[:MAX_NESTING])
        assert_refused(text, too_deep, DEEP)
