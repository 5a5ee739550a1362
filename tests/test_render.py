"""Digest rendering: subject wording, escaping, highlights, inlined CSS, the text part."""

from __future__ import annotations

import dataclasses
import datetime
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import css_inline
import jinja2
import pytest

from digestd.digest import Digest, DigestEntry
from digestd.render import (
    DigestRenderer,
    MailOptions,
    default_templates_dir,
    digest_subject,
    inline_template_css,
    render_digest,
    wrap_text,
)

HOSTILE_TITLE = "<script>alert(1)</script> & ]]> 量子 Ω naïve"
LONG_ABSTRACT = "We present a language model for text to SQL translation. " * 20


def entry(
    uid: str,
    title: str,
    *,
    abstract: str = "A short abstract about the model.",
    marked_word: str = "model",
    url: str | None = None,
) -> DigestEntry:
    return DigestEntry(
        uid=uid,
        title=title,
        abstract=abstract,
        url=url or f"https://arxiv.org/abs/{uid}",
        score=1.5,
        reasons=("your query “llm AND code”",),
        matched_terms=("model", '"text to sql"'),
        title_segments=segments(title, marked_word),
        abstract_segments=segments(abstract, marked_word),
    )


def segments(text: str, word: str) -> tuple[tuple[str, bool], ...]:
    parts: list[tuple[str, bool]] = []
    for piece in re.split(f"({re.escape(word)})", text):
        if piece:
            parts.append((piece, piece == word))
    return tuple(parts)


def digest(*entries: DigestEntry, more: int = 0, name: str = "Ada") -> Digest:
    return Digest(
        subscriber_name=name,
        subscriber_email="ada@example.org",
        digest_date=datetime.date(2025, 3, 14),
        entries=entries,
        more_count=more,
        unsubscribe_url="https://digest.example.org/unsubscribe?token=abc&list=1",
        manage_url="https://digest.example.org/manage?token=abc",
        site_name="digestd",
    )


@pytest.fixture
def sample() -> Digest:
    hostile = DigestEntry(
        uid="2403.00002",
        title=HOSTILE_TITLE + "\x1b[31m\r\n\x00 model",
        abstract="Ω naïve 量子 model\x07 with ]]> and <b>tags</b> & more",
        url="https://arxiv.org/abs/2403.00002",
        score=2.0,
        reasons=("topic “Text-to-SQL”\x00\r\n",),
        matched_terms=("model",),
        title_segments=((HOSTILE_TITLE + "\x1b[31m\r\n\x00 ", False), ("model", True)),
        abstract_segments=(
            ("Ω naïve 量子 ", False),
            ("model", True),
            ("\x07 with ]]> and <b>tags</b> & more", False),
        ),
    )
    return digest(
        entry("2403.00001", "A model for text to SQL"),
        hostile,
        entry("2403.00003", "Long abstracts are cut", abstract=LONG_ABSTRACT),
        more=4,
    )


@pytest.mark.parametrize(
    ("shown", "more", "expected"),
    [
        (7, 0, "Paper 0 and 6 more papers — Mar 14"),
        (1, 0, "Paper 0 — Mar 14"),
        (3, 4, "Paper 0 and 6 more papers — Mar 14"),
        (0, 0, "No new papers — Mar 14"),
    ],
)
def test_subject_wording(shown: int, more: int, expected: str) -> None:
    entries = tuple(entry(f"2403.{i:05}", f"Paper {i}") for i in range(shown))
    assert digest_subject(digest(*entries, more=more)) == expected


def test_subject_date_has_no_leading_zero() -> None:
    one = digest(entry("1", "x"))
    early = dataclasses.replace(one, digest_date=datetime.date(2025, 12, 3))
    assert digest_subject(early) == "x — Dec 3"


def test_html_escapes_untrusted_text_and_highlights_matches(sample: Digest) -> None:
    html = render_digest(sample).html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt; 量子 Ω naïve" in html
    assert "<script>" not in html and "<b>tags</b>" not in html
    assert "&lt;b&gt;tags&lt;/b&gt; &amp; more" in html
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", html)
    assert re.search(r'<span class="hit" style="[^"]+">model</span>', html)
    assert html.count('<span class="hit"') >= 4
    assert 'href="https://arxiv.org/abs/2403.00001"' in html
    # Jinja escapes quotes in text too (&#34;); a browser shows the same text.
    reason = re.sub(r"<[^>]+>", "", unescape(html))
    assert 'Matched model, "text to sql" — your query “llm AND code”' in reason
    assert "4 more papers" in html and "… and 4 more papers." in html
    assert 'href="https://digest.example.org/unsubscribe?token=abc&amp;list=1"' in html
    assert 'href="https://digest.example.org/manage?token=abc"' in html


def test_html_styles_are_inlined(sample: Digest) -> None:
    html = render_digest(sample).html
    # The one <style> block holds only what cannot be inline: media queries.
    (block,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    rules = re.sub(r"/\*.*?\*/", "", block, flags=re.DOTALL)
    assert re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", rules).strip() == ""
    assert re.search(r'class="container"[^>]* style="[^"]*max-width: 600px', html)
    assert re.search(r'<a class="title-link" href="[^"]+" style="[^"]*color:', html)
    assert re.search(r'class="hit" style="[^"]*background-color:', html)


def test_long_abstract_is_cut_at_a_word_with_an_ellipsis(sample: Digest) -> None:
    rendered = render_digest(sample)
    paragraphs = re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', rendered.html)
    visible = re.sub(r"<[^>]+>", "", paragraphs[2])
    assert visible.endswith("…")
    limit = MailOptions().snippet_chars
    assert limit * 0.6 <= len(visible) <= limit + 2
    kept = visible.removesuffix(" …")
    # Cut after a whole sentence, near the limit.
    assert kept.endswith(".") and LONG_ABSTRACT.startswith(kept)


def test_text_part_lists_papers_urls_and_links(sample: Digest) -> None:
    text = render_digest(sample).text
    assert text.startswith("7 new papers matched · Mar 14\n")
    assert "1.  A model for text to SQL\n" in text
    assert "\n    https://arxiv.org/abs/2403.00001\n" in text
    # The escape character is gone; what followed it is harmless text.
    assert "2.  " + HOSTILE_TITLE + " [31m model" in text
    assert 'Matched model, "text to sql" — your query “llm AND code”' in text
    assert "https://arxiv.org/abs/2403.00003" in text
    assert "4 more papers\n" in text and "… and 4 more papers." in text
    assert "Unsubscribe:\nhttps://digest.example.org/unsubscribe?token=abc&list=1" in text
    assert "Manage your subscription:\nhttps://digest.example.org/manage?token=abc" in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    assert max(len(line) for line in text.splitlines() if "https://" not in line) <= 72


def test_no_manage_link_no_more_line_no_name() -> None:
    plain = Digest(
        **{**digest(entry("1", "Only paper")).__dict__, "manage_url": None, "subscriber_name": ""}
    )
    rendered = render_digest(plain)
    assert "Manage" not in rendered.html and "Manage" not in rendered.text
    assert "more paper" not in rendered.text
    assert "Unsubscribe" in rendered.html


def test_non_http_links_are_not_clickable() -> None:
    rendered = render_digest(digest(entry("1", "Sneaky", url="javascript:alert(1)")))
    assert 'href="javascript:' not in rendered.html


def test_missing_template_variable_fails(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    (templates / "digest.txt").write_text("{{ no_such_variable }}\n", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        render_digest(digest(entry("1", "x")), templates_dir=templates)


def test_wrap_text_keeps_long_urls_whole() -> None:
    url = "https://example.org/" + "x" * 100
    wrapped = wrap_text("see " + url + " and then some more words " * 5, indent="  ", first="1. ")
    lines = wrapped.splitlines()
    assert lines[0] == "1. see"
    assert lines[1] == "  " + url
    assert all(len(line) <= 72 for line in lines[2:])


def test_text_cannot_forge_highlights() -> None:
    title = "\ue000<mark>fake</mark>\ue001 real"
    sneaky = DigestEntry(
        uid="1",
        title=title,
        abstract="",
        url="https://arxiv.org/abs/1",
        score=1.0,
        reasons=(),
        matched_terms=(),
        title_segments=((title[:-4], False), ("real", True)),
        abstract_segments=(),
    )
    html = render_digest(digest(sneaky)).html
    assert "&lt;mark&gt;fake&lt;/mark&gt;" in html
    assert html.count('<span class="hit"') == 1
    assert "\ue000" not in html and "\ue001" not in html


def test_entry_without_segments_shows_plain_title_and_abstract() -> None:
    bare = dataclasses.replace(
        entry("1", "Plain <title>", abstract="Plain & abstract"),
        title_segments=(),
        abstract_segments=(),
    )
    rendered = render_digest(digest(bare))
    assert "Plain &lt;title&gt;" in rendered.html
    assert "Plain &amp; abstract" in rendered.html
    title = re.findall(r'<h2 class="title".*?</h2>', rendered.html)[0]
    assert 'class="hit"' not in title
    assert "1.  Plain <title>" in rendered.text


def test_cut_inside_a_highlight_keeps_the_markup_balanced() -> None:
    words = "word " * 55 + "model " * 10  # the cut falls among the highlighted words
    marked = dataclasses.replace(
        entry("1", "x", abstract=words),
        abstract_segments=segments(words, "model"),
    )
    html = render_digest(digest(marked)).html
    abstract = re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', html)[0]
    assert abstract.count("<span") == abstract.count("</span>") >= 1
    assert re.sub(r"<[^>]+>", "", abstract).endswith("…")


def test_bundled_templates_are_the_top_level_folder() -> None:
    from digestd.render import default_templates_dir

    top_level = Path(__file__).resolve().parent.parent / "templates"
    assert default_templates_dir().resolve() == top_level.resolve()
    assert {"digest.html", "digest.txt", "digest.css", "feeds_index.html"} <= {
        p.name for p in default_templates_dir().iterdir()
    }


def test_papers_past_the_cap_are_listed_by_title() -> None:
    base = digest(entry("2403.00001", "A model paper"))
    capped = dataclasses.replace(
        base,
        more_count=3,
        more_papers=(("Extra <One>", "https://arxiv.org/abs/1"), ("Extra Two", "javascript:x")),
    )
    rendered = render_digest(capped)
    assert "Extra &lt;One&gt;" in rendered.html
    assert 'href="https://arxiv.org/abs/1"' in rendered.html
    assert "javascript:" not in rendered.html.split("Extra Two")[0].rsplit("<p", 1)[1]
    assert "… and 1 more paper." in rendered.html
    assert "2.  Extra <One>\n    https://arxiv.org/abs/1" in rendered.text
    assert "… and 1 more paper." in rendered.text


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text between, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[object] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append((tag, sorted(attrs)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.items.append(data.strip())


def elements(html: str) -> list[object]:
    parser = _Elements()
    parser.feed(html)
    return parser.items


def test_css_inlined_once_per_template_equals_inlining_every_message(sample: Digest) -> None:
    # The reference: the plain template rendered, then the whole message run through the
    # inliner, as a per-message inliner would do it.
    plain = DigestRenderer(inline_css=False, cache_entries=False)
    inliner = css_inline.CSSInliner(
        extra_css=plain.css, load_remote_stylesheets=False, keep_style_tags=True
    )
    capped = dataclasses.replace(sample, more_papers=(("Extra <One>", "https://arxiv.org/abs/1"),))
    for one in (sample, capped, dataclasses.replace(sample, manage_url=None, subscriber_name="")):
        expected = inliner.inline(plain.render(one).html)
        assert elements(render_digest(one).html) == elements(expected)
        assert render_digest(one).text == plain.render(one).text


def test_cached_entries_give_the_same_digest_every_time(sample: Digest) -> None:
    renderer = DigestRenderer()
    first = renderer.render(sample)
    reordered = dataclasses.replace(sample, entries=sample.entries[::-1])
    assert renderer.render(sample) == first
    assert renderer.render(reordered).text.index("1.  Long abstracts") > 0
    assert renderer.render(sample) == first


def test_jinja_tags_the_html_parser_would_move_are_refused() -> None:
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
    moved = "<table>{% for row in rows %}<tr><td>{{ row }}</td></tr>{% endfor %}</table>"
    with pytest.raises(jinja2.TemplateError, match="moved or dropped Jinja tags"):
        inline_template_css(moved, inliner.inline, name="t.html")
    kept = "<p class='x'>{% if a %}{{ a }}{% endif %}</p>"
    assert "{% if a %}{{ a }}{% endif %}" in inline_template_css(kept, inliner.inline, name="t")
