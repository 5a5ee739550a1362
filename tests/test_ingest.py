"""Ingest: the sample parses exactly, real-file quirks are tolerated, bad files are quarantined."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digestd.errors import DumpError
from digestd.ingest import (
    ParsedPaper,
    paper_identity,
    paper_uid,
    parse_dump_bytes,
    read_dump_file,
    title_key,
)
from digestd.ingest.daily_text import (
    _END,
    _TRANSITION,
    Label,
    Paragraph,
    _abstract_cost,
    _paragraphs,
    _title_cost,
    best_labels,
    parse_daily_text,
)
from digestd.ingest.papers import ARXIV_ID, find_arxiv_id

REFERENCE = date(2026, 11, 23)


def sample_blocks(sample_path: Path) -> list[tuple[str, str]]:
    """The sample's (title, abstract) pairs, read independently of the parser: non-empty lines
    after the date line alternate title, abstract."""
    lines = sample_path.read_text(encoding="utf-8").split("\n")
    body = [line for line in lines[lines.index("Mar 14") + 1 :] if line.strip()]
    return list(zip(body[0::2], body[1::2], strict=True))


def test_sample_parses_exactly(sample_path: Path) -> None:
    dump = read_dump_file(sample_path, reference=REFERENCE)
    expected = sample_blocks(sample_path)
    assert len(dump.parsed.papers) == 87 == len(expected)
    assert [(p.title, p.abstract) for p in dump.parsed.papers] == expected
    assert dump.parsed.dump_date == date(2026, 3, 14)
    assert dump.parsed.warnings == ()
    assert dump.parsed.papers[0].title == (
        "Bridging the Training-Inference Gap in LLMs by Leveraging Self-Generated Tokens"
    )
    assert dump.parsed.papers[-1].abstract.endswith("to enhance and utilize SLMs effectively.")
    assert len({paper_uid(p) for p in dump.parsed.papers}) == 87


def test_year_is_the_most_recent_not_in_the_future(sample_path: Path) -> None:
    data = sample_path.read_bytes()
    assert parse_dump_bytes(data, reference=date(2026, 3, 14)).dump_date == date(2026, 3, 14)
    assert parse_dump_bytes(data, reference=date(2026, 3, 13)).dump_date == date(2025, 3, 14)
    assert parse_dump_bytes(data, reference=date(2024, 12, 31)).dump_date == date(2024, 3, 14)


def test_crlf_bom_and_trailing_whitespace_are_tolerated(sample_path: Path) -> None:
    text = sample_path.read_text(encoding="utf-8")
    messy = "\ufeff" + "\r\n".join(line + "  \t" for line in text.split("\n"))
    clean = parse_dump_bytes(text.encode(), reference=REFERENCE)
    parsed = parse_dump_bytes(messy.encode("utf-8"), reference=REFERENCE)
    assert parsed.papers == clean.papers


def test_title_without_abstract_is_kept_with_a_warning() -> None:
    text = (
        "header\n\nMar 14\n\nFirst Paper Title\n\nFirst abstract. It has sentences.\n\n"
        "A Title With No Abstract\n\nThird Paper Title\n\nThird abstract text.\n\n"
        "Last Title Alone\n"
    )
    parsed = parse_daily_text(text, reference=REFERENCE)
    assert [(p.title, p.abstract) for p in parsed.papers] == [
        ("First Paper Title", "First abstract. It has sentences."),
        ("A Title With No Abstract", ""),
        ("Third Paper Title", "Third abstract text."),
        ("Last Title Alone", ""),
    ]
    assert len(parsed.warnings) == 2
    assert "A Title With No Abstract" in parsed.warnings[0]


def test_multi_paragraph_abstract_is_kept_whole() -> None:
    text = (
        "Mar 14\n\nA Title\n\nFirst paragraph ends here.\n\nSecond paragraph ends here.\n\n"
        "Next Title\n\nB."
    )
    parsed = parse_daily_text(text, reference=REFERENCE)
    assert parsed.papers[0].abstract == "First paragraph ends here.\n\nSecond paragraph ends here."
    assert parsed.papers[1].title == "Next Title"


def test_arxiv_id_gives_identity_and_dedup_key_ignores_case_and_accents() -> None:
    text = "Mar 14\n\nA Paper\n\nWe study things. See arXiv:2403.01234v2 for details."
    paper = parse_daily_text(text, reference=REFERENCE).papers[0]
    assert paper.arxiv_id == "2403.01234"
    assert paper_uid(paper) == "arxiv:2403.01234"
    assert title_key("Naïve  Bayes: Revisited!") == title_key("naive bayes revisited")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"Mar 14\n\nTitle\n\n\xff\xfe broken", "not UTF-8"),
        (b"just some\n\ntext without a date\n", "no date line"),
        (b"new\n\nMar 14\n\n", "no papers"),
    ],
)
def test_files_that_are_not_dumps_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DumpError, match=reason):
        parse_dump_bytes(data, reference=REFERENCE)


@given(st.binary(max_size=2000))
def test_parser_never_fails_other_than_with_dump_error(data: bytes) -> None:
    try:
        parsed = parse_dump_bytes(data, reference=REFERENCE)
    except DumpError:
        return
    assert parsed.papers or parsed.format != "text"  # an empty day is a service's answer only
    assert all(p.title for p in parsed.papers)


ABSTRACT = (
    "We propose a new method for an old problem. It works well on many benchmarks and beats"
    " strong baselines. Code is released."
)


def papers_of(body: str) -> list[tuple[str, str]]:
    parsed = parse_daily_text(f"new\n\nMar 14\n\n{body}", reference=REFERENCE)
    return [(p.title, p.abstract) for p in parsed.papers]


def test_plain_alternation_costs_nothing(sample_path: Path) -> None:
    lines = sample_path.read_text(encoding="utf-8").split("\n")
    paragraphs = _paragraphs(lines[lines.index("Mar 14") + 1 :])
    labels, cost = best_labels(paragraphs)
    assert cost == 0
    assert labels == [Label.TITLE, Label.ABSTRACT] * 87


@pytest.mark.parametrize("first", [True, False])
def test_title_ending_with_a_period_is_still_a_title(first: bool) -> None:
    before = "" if first else f"Paper Zero\n\n{ABSTRACT}\n\n"
    body = f"{before}Attention Is All You Need.\n\n{ABSTRACT}\n\nPaper Two\n\n{ABSTRACT}"
    assert papers_of(body)[-2:] == [
        ("Attention Is All You Need.", ABSTRACT),
        ("Paper Two", ABSTRACT),
    ]


def test_one_line_abstract_without_a_period_is_an_abstract() -> None:
    body = f"Paper One\n\nWe study graphs (see appendix)\n\nPaper Two\n\n{ABSTRACT}"
    assert papers_of(body) == [
        ("Paper One", "We study graphs (see appendix)"),
        ("Paper Two", ABSTRACT),
    ]


def test_long_multi_paragraph_abstract_stays_one_abstract() -> None:
    parts = [ABSTRACT * 6, ABSTRACT * 3, "The second part is short. Really.", ABSTRACT * 2]
    body = "Paper One\n\n" + "\n\n".join(parts) + f"\n\nPaper Two\n\n{ABSTRACT}"
    assert papers_of(body) == [("Paper One", "\n\n".join(parts)), ("Paper Two", ABSTRACT)]


def test_title_without_abstract_before_a_normal_paper() -> None:
    body = f"Paper One\n\n{ABSTRACT}\n\nLonely Title Without Abstract\n\nPaper Three\n\n{ABSTRACT}"
    parsed = parse_daily_text(f"Mar 14\n\n{body}", reference=REFERENCE)
    assert [(p.title, p.abstract) for p in parsed.papers] == [
        ("Paper One", ABSTRACT),
        ("Lonely Title Without Abstract", ""),
        ("Paper Three", ABSTRACT),
    ]
    assert len(parsed.warnings) == 1
    assert "Lonely Title Without Abstract" in parsed.warnings[0]


def test_consecutive_date_lines_use_the_last_with_a_warning() -> None:
    text = f"new\n\nMar 10\n\nMar 17\n\n\nPaper One\n\n{ABSTRACT}"
    parsed = parse_daily_text(text, reference=REFERENCE)
    assert parsed.dump_date == date(2026, 3, 17)
    assert [p.title for p in parsed.papers] == ["Paper One"]
    assert len(parsed.warnings) == 1
    assert "Mar 10" in parsed.warnings[0]
    assert "Mar 17" in parsed.warnings[0]


def test_overlong_abstract_is_cut_at_a_word_boundary_with_a_warning() -> None:
    abstract = "lorem ipsum dolor sit amet. " * 1000  # 28,000 characters
    parsed = parse_daily_text(f"Mar 14\n\nPaper One\n\n{abstract}", reference=REFERENCE)
    cut = parsed.papers[0].abstract
    assert len(cut) <= 20_000
    assert abstract.startswith(cut)
    assert abstract[len(cut)] == " "
    assert len(cut) > 19_990
    assert "cut" in parsed.warnings[0]


def test_a_paragraph_over_500_characters_is_never_a_title() -> None:
    assert papers_of("x" * 500 + f"\n\n{ABSTRACT}") == [("x" * 500, ABSTRACT)]
    with pytest.raises(DumpError, match="not a title"):
        papers_of("x" * 501 + f"\n\n{ABSTRACT}")


title_words = st.text("abcdefghij", min_size=1, max_size=9).map(str.capitalize)
sentences = st.lists(st.text("abcdefghij", min_size=1, max_size=9), min_size=3, max_size=15).map(
    lambda words: " ".join(words).capitalize() + "."
)
papers = st.lists(
    st.tuples(
        st.lists(title_words, min_size=1, max_size=12).map(" ".join),
        st.lists(sentences, min_size=2, max_size=8).map(" ".join),
    ),
    min_size=1,
    max_size=8,
)


@given(papers)
@pytest.mark.slow
def test_ordinary_titles_and_abstracts_parse_exactly(pairs: list[tuple[str, str]]) -> None:
    assert papers_of("\n\n".join(f"{title}\n\n{abstract}" for title, abstract in pairs)) == pairs


def test_feb_29_without_a_year_is_the_latest_leap_day() -> None:
    text = "Feb 29\n\nA Leap Paper\n\nWritten on a leap day, as one does."
    assert parse_daily_text(text, reference=date(2026, 11, 23)).dump_date == date(2024, 2, 29)
    assert parse_daily_text(text, reference=date(2028, 3, 1)).dump_date == date(2028, 2, 29)


SPELLED_OUT = {"ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
SPELLED_OUT |= {"ħ": "h", "ŧ": "t"}


def slow_title_key(title: str) -> str:
    """title_key written plainly, with no fast path for ASCII titles."""
    folded = unicodedata.normalize("NFKD", title).casefold()
    folded = unicodedata.normalize("NFKD", "".join(SPELLED_OUT.get(c, c) for c in folded))
    words = re.findall(r"[^\W_]+", "".join(c for c in folded if not unicodedata.combining(c)))
    return hashlib.sha256(" ".join(words).encode()).hexdigest()[:32]


# Text around near-miss and real arXiv references, including letters that match others under
# re.IGNORECASE (dotless ı, dotted İ, long ſ, the Kelvin sign).
reference = st.tuples(
    st.sampled_from(
        [
            "arxiv",
            "arXiv",
            "arxıv",
            "ARXİV",
            "arxiv.org/abs/",
            "arxiv.org/pdf/",
            "arxiv.org/",
            "huggingface.co/papers/",
            "hugginGface.co/paperſ/",
            "x/",
            "",
        ]
    ),
    st.sampled_from([":", " : ", "", "\n:\t"]),
    st.sampled_from(
        ["2403.01234", "2403.0123", "2403.123", "240.01234", "2403.012345", "٢٤٠٣.٠١٢٣"]
    ),
    st.sampled_from(["", "v2"]),
).map("".join)
id_text = st.lists(
    st.one_of(reference, st.sampled_from([" ", "See ", ".", "é", "naïve", "_", "Kx", "Ⅻ", "ﬁ"])),
    max_size=6,
).map("".join)


@given(id_text, st.one_of(id_text, st.text(max_size=40)))
def test_arxiv_id_is_found_exactly_as_by_the_plain_pattern(title: str, abstract: str) -> None:
    found = ARXIV_ID.search(title) or ARXIV_ID.search(abstract)
    assert find_arxiv_id(title, abstract) == (found["id"] if found else None)


@given(
    st.one_of(
        id_text,
        st.text(max_size=40),
        st.text("AbC dE-_.!?09 \t", max_size=40),
        st.text("SøØrenŁłæÆŒœßđĐðÐþÞıİħŧ é", max_size=40),
    )
)
def test_title_key_and_identity_are_unchanged_by_the_ascii_fast_path(title: str) -> None:
    assert title_key(title) == slow_title_key(title)
    paper = ParsedPaper(title=title, abstract="", arxiv_id=find_arxiv_id(title, ""))
    assert paper_identity(paper) == (paper_uid(paper), slow_title_key(title))


def plain_best_labels(paragraphs: list[Paragraph]) -> tuple[list[Label], float]:
    """best_labels as first written: the same Viterbi over dicts keyed by label."""
    cost = {label: math.inf for label in Label}
    cost[Label.TITLE] = _title_cost(paragraphs[0])
    back: list[dict[Label, Label]] = []
    for paragraph in paragraphs[1:]:
        abstract = _abstract_cost(paragraph)
        emission = (_title_cost(paragraph), abstract, abstract)
        step: dict[Label, float] = {}
        pointers: dict[Label, Label] = {}
        for label in Label:
            previous = min(
                (p for p in Label if (p, label) in _TRANSITION),
                key=lambda p: cost[p] + _TRANSITION[p, label],
            )
            step[label] = cost[previous] + _TRANSITION[previous, label] + emission[label]
            pointers[label] = previous
        cost = step
        back.append(pointers)
    last = min(Label, key=lambda label: cost[label] + _END[label])
    labels = [last]
    for pointers in reversed(back):
        labels.append(pointers[labels[-1]])
    return labels[::-1], cost[last] + _END[last]


paragraph_texts = st.one_of(
    st.text("ab .!?\"')", min_size=1, max_size=260),
    st.sampled_from(["Attention Is All You Need.", ABSTRACT, "x" * 501, "One. Two", "Short"]),
)


@given(st.lists(st.builds(Paragraph, paragraph_texts, st.integers(1, 3)), min_size=1, max_size=12))
def test_labelling_is_the_one_the_plain_viterbi_finds(paragraphs: list[Paragraph]) -> None:
    assert best_labels(paragraphs) == plain_best_labels(paragraphs)
