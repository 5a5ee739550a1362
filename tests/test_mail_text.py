"""What the digest mail says: snippets cut at sentences, LaTeX as text, the subject's pattern
and length, the preheader, the header line, the reader's order, and the template check."""

from __future__ import annotations

import dataclasses
import datetime
import re
import shutil
from pathlib import Path

import pytest

from digestd.config import load_settings
from digestd.digest import CandidatePaper, Digest, DigestEntry, QuerySource, plan_digest
from digestd.errors import ConfigError
from digestd.formatting import Byline, short_authors
from digestd.mail_view import MailOptions, header_line, preheader, subject_line
from digestd.match import PaperMatch
from digestd.render import default_templates_dir, render_digest
from digestd.snippets import highlighted_field, readable_latex
from digestd.template_check import check_templates

HOSTILE = "<script>alert(1)</script> & \u202e" + "Ω" * 40 + " " + "word " * 200


def entry(number: int, title: str | None = None, **changes: object) -> DigestEntry:
    base = DigestEntry(
        uid=f"u{number}",
        title=title or f"Paper {number}",
        abstract="A short abstract.",
        url=f"https://arxiv.org/abs/2403.{number:05d}",
        score=1.0,
        reasons=(),
        matched_terms=("model",),
        title_segments=(),
        abstract_segments=(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def digest(*entries: DigestEntry, more: int = 0, **changes: object) -> Digest:
    base = Digest(
        subscriber_name="Ada",
        subscriber_email="ada@example.org",
        digest_date=datetime.date(2026, 3, 14),
        entries=entries,
        more_count=more,
        unsubscribe_url="https://x.example/unsubscribe/t",
        manage_url="https://x.example/manage/t",
        site_name="digestd",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("latex", "text"),
    [
        ("$\\alpha$-divergence", "α-divergence"),
        ("\\textbf{Bold} claims", "Bold claims"),
        ("rates of 50% & more", "rates of 50% & more"),
        ("as shown \\cite{smith2020} here", "as shown here"),
        ("$\\ell_1$-norm in $\\mathbb{R}^d$", "ℓ_1-norm in ℝ^d"),
        ("plain {braces} stay", "plain {braces} stay"),
    ],
)
def test_latex_is_shown_as_readable_text(latex: str, text: str) -> None:
    assert readable_latex(latex) == text


def test_abstract_is_cut_after_a_sentence_near_the_limit() -> None:
    sentences = "".join(f"Sentence number {n} says something. " for n in range(30))
    plain, _ = highlighted_field(((sentences, False),), limit=300, hit_open="<b>", sentences=True)
    assert 180 <= len(plain) <= 302
    assert plain.endswith(". …") and sentences.startswith(plain.removesuffix(" …"))
    # Without a sentence end past 60% of the limit, the cut falls between words.
    words = "word " * 200
    plain, _ = highlighted_field(((words, False),), limit=300, hit_open="<b>", sentences=True)
    assert plain.endswith("word…") and len(plain) <= 301


def test_a_text_just_over_the_limit_is_kept_whole() -> None:
    text = "word " * 64  # 320 characters: within 10% of 300
    text = text.strip()
    plain, _ = highlighted_field(((text, False),), limit=300, hit_open="<b>", sentences=True)
    assert plain == text


def test_four_authors_then_et_al() -> None:
    names = [f"Author {n}" for n in range(1, 8)]
    assert short_authors(names) == "Author 1, Author 2, Author 3, Author 4 et al."
    assert short_authors(names[:4]) == "Author 1, Author 2, Author 3, Author 4"


@pytest.mark.parametrize("count", [1, 2, 25])
def test_subject_says_what_is_inside_and_stays_under_78(count: int) -> None:
    entries = [entry(1, HOSTILE), *(entry(n) for n in range(2, count + 1))]
    subject = subject_line(digest(*entries, more=3), MailOptions(), _english())
    assert len(subject) <= 78
    assert subject.startswith("<script>alert(1)</script> &")
    assert subject.endswith("— Mar 14")
    assert "\n" not in subject


def test_subject_pattern_is_a_setting_and_is_checked(tmp_path: Path) -> None:
    options = MailOptions(subject="[{site}] {count} papers: {first} — {date}")
    subject = subject_line(digest(entry(1, "Chain-of-Thought Hub"), entry(2)), options, _english())
    assert subject == "[digestd] 2 papers: Chain-of-Thought Hub — Mar 14"
    config = tmp_path / "digestd.toml"
    config.write_text('[digest]\nsubject = "{first} {nope}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[digest\] subject .*'nope'"):
        load_settings(config)


def test_preheader_counts_then_names_titles_within_90_characters() -> None:
    entries = (entry(1, "Chain-of-Thought Hub"), entry(2, "PaLM"), *(entry(n) for n in range(3, 6)))
    assert preheader(digest(*entries), _english()) == (
        "5 papers · Chain-of-Thought Hub, PaLM, Paper 3 and 2 more"
    )
    long = preheader(digest(entry(1, HOSTILE), entry(2)), _english())
    assert long.startswith("2 papers · <script>") and len(long) <= 90


def test_header_line_counts_matches_new_papers_and_queries() -> None:
    entries = tuple(entry(n) for n in range(1, 13))
    line = header_line(digest(*entries, new_count=340, query_count=3), _english())
    assert line == "12 of 340 new papers matched your 3 queries · Mar 14"
    assert header_line(digest(entry(1), query_count=1), _english()) == (
        "1 new paper matched your query · Mar 14"
    )


def test_full_entries_then_a_compact_list_with_the_right_count() -> None:
    entries = tuple(
        entry(n, byline=Byline(authors=f"Writer {n}"), abstract=f"Abstract {n}.")
        for n in range(1, 16)
    )
    rendered = render_digest(digest(*entries, more=7), options=MailOptions(full_entries=10))
    assert rendered.html.count('class="abstract"') == 10
    assert "12 more papers" in rendered.html and "12 more papers\n" in rendered.text
    assert "Writer 15" in rendered.html and "Abstract 15." not in rendered.html
    assert re.search(r"15\. <a [^>]*>Paper 15</a>", rendered.html)
    assert "… and 7 more papers." in rendered.text
    assert "\n15. Paper 15\n" in rendered.text


def test_digest_order_is_the_readers_choice() -> None:
    papers = {
        1: candidate(1, upvotes=3, published=datetime.date(2026, 3, 1)),
        2: candidate(2, upvotes=50, published=datetime.date(2026, 2, 1)),
        3: candidate(3, upvotes=None, published=datetime.date(2026, 3, 10)),
    }
    scores = {1: 3.0, 2: 2.0, 3: 1.0}
    sources = [(QuerySource("query", "q"), FakeMatches(scores))]

    def order(kind: str) -> list[int]:
        planned = plan_digest(
            sources=sources, papers=papers, already_sent=set(), max_papers=10, order=kind
        )
        assert planned is not None
        return list(planned.paper_ids)

    assert order("relevance") == [1, 2, 3]
    assert order("newest") == [3, 1, 2]
    assert order("upvotes") == [2, 1, 3]


def test_check_templates_names_the_broken_template_and_line(tmp_path: Path) -> None:
    assert check_templates(None) == []
    folder = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), folder)
    entry_html = folder / "digest_entry.html"
    lines = entry_html.read_text(encoding="utf-8").splitlines()
    at = next(n for n, line in enumerate(lines) if "entry.details" in line)
    lines[at] = lines[at].replace("entry.details", "entry.no_such_field")
    entry_html.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (problem,) = check_templates(folder)
    assert (problem.template, problem.line) == ("digest_entry.html", at + 1)
    assert "no_such_field" in problem.message
    (folder / "digest.txt").write_text("{% if x %}\n", encoding="utf-8")
    problems = check_templates(folder)
    assert [p.template for p in problems] == ["digest.txt"]


class FakeMatches:
    """One query's matches with fixed scores and no hits."""

    def __init__(self, scores: dict[int, float]) -> None:
        self._scores = scores

    def scores(self) -> dict[int, float]:
        return self._scores

    def __getitem__(self, paper_id: int) -> PaperMatch:
        return PaperMatch(self._scores[paper_id], ())


def candidate(number: int, **fields: object) -> CandidatePaper:
    stored = datetime.datetime(2026, 3, 14, tzinfo=datetime.UTC)
    base = CandidatePaper(
        number, f"u{number}", f"Paper {number}", "Abstract.", "https://x", stored.date(), stored
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def _english():  # type: ignore[no-untyped-def]
    from digestd.i18n import translations

    return translations("en")


def test_neighbouring_highlights_are_one_and_bidi_overrides_are_gone() -> None:
    segments = (("a ", False), ("kv", True), (" ", False), ("cache", True), (" \u202eevil", False))
    plain, html = highlighted_field(segments, limit=None, hit_open="<b>", hit_close="</b>")
    assert html == "a <b>kv cache</b> evil"
    assert "\u202e" not in plain


def test_reason_line_names_a_few_terms_and_sources() -> None:
    many = entry(
        1,
        matched_terms=tuple(f"term{n}" for n in range(20)),
        found_in=tuple(("query", f"query number {n} " + "x" * 100) for n in range(9)),
    )
    text = render_digest(digest(many)).text
    reason = text[text.index("Matched") : text.index("\n\n", text.index("Matched"))]
    assert "term5" in reason and "term6" not in reason
    joined = reason.replace("\n    ", " ")
    assert "query number 2" in joined and "query number 3" not in joined
    assert "x" * 61 not in joined


def test_a_german_digest_has_no_english_fixed_words_left() -> None:
    from tests.support.mail_samples import many_paper_digest
    from tests.test_web_language import english_left

    english = many_paper_digest()
    german = dataclasses.replace(
        english, language="de", view_url="https://x/digest/t", pause_url="https://x/pause/t"
    )
    for sample in (english, german):
        assert sample.entries and sample.more_count
    rendered = render_digest(german)
    assert english_left(rendered.html) == []
    assert english_left(rendered.text.replace("\n    ", " ").replace("\n", " ")) == []
    assert 'lang="de"' in rendered.html
    assert "Im Browser ansehen" in rendered.html and "Abbestellen" in rendered.text
    assert "14. März" in rendered.subject or "März" in rendered.subject
    # the check finds English where there is some
    assert len(english_left(render_digest(english).html)) > 5


def test_each_language_keeps_its_own_words_whatever_was_rendered_before() -> None:
    one = digest(entry(1))
    german = render_digest(dataclasses.replace(one, language="de")).text
    english = render_digest(one).text
    assert "Treffer" in german and "Matched" not in german
    assert "Matched" in english and "Treffer" not in english
    assert "Treffer" in render_digest(dataclasses.replace(one, language="de")).text
