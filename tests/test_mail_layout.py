"""The digest mail as mail clients need it, read from the rendered parts (no browser): its size
under Gmail's clipping, <style> blocks Gmail keeps, a hidden preheader first, lang and dir, the
table layout with Outlook's 600 px table, dark mode, a plain part of short lines, a short
subject, bylines of four authors, abstracts cut near ``[digest] snippet_chars``, LaTeX as text.

The digests come from tests/support/mail_samples.py: realistic ones of 5 and 25 papers planned
from the bundled sample, and the worst case the caps allow (hostile 1,000-character titles,
60 long author names a paper, long abstracts, a five-figure count of papers beyond).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import pytest

from digestd.config import DigestSettings
from digestd.digest import CandidatePaper, Digest, QuerySource
from digestd.render import RenderedMail, render_digest
from tests.support import mail_samples
from tests.support.mail_html import PADDING, MailDocument, urls

MAX_HTML_BYTES = 90_000  # Gmail clips a message's HTML past ~102 KB
MAX_STYLE_BYTES = 16 * 1024  # Gmail drops every <style> block past 16 KB
MAX_LINE = 78
SUBJECT_MAX = 78
SAMPLES = ("five", "many", "worst")
BUILDERS = {
    "five": mail_samples.five_paper_digest,
    "many": mail_samples.many_paper_digest,
    "worst": mail_samples.worst_case_digest,
}
# Inline ways to keep a hidden preheader out of sight (display:none is not honoured everywhere).
ALSO_HIDING = {
    "max-height": {"0", "0px"},
    "overflow": {"hidden"},
    "opacity": {"0"},
    "font-size": {"0", "0px", "1px"},
    "line-height": {"0", "0px", "1px"},
    "visibility": {"hidden"},
    "mso-hide": {"all"},
}
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.IGNORECASE)
_UNSUPPORTED_CSS = re.compile(
    r"display\s*:\s*(inline-)?(flex|grid)|grid-template|background-image|background\s*:[^;}]*url\(",
    re.IGNORECASE,
)
_DARK_MEDIA = re.compile(r"@media[^{]*prefers-color-scheme\s*:\s*dark", re.IGNORECASE)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


@cache
def digest(name: str) -> Digest:
    return BUILDERS[name]()


@cache
def mail(name: str) -> RenderedMail:
    return render_digest(digest(name))


@cache
def document(name: str) -> MailDocument:
    return MailDocument(mail(name).html)


def matched(d: Digest) -> int:
    return len(d.entries) + d.more_count


def css_nesting(css: str) -> list[str]:
    """The preludes of @ rules that sit inside another @ rule's block."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"\"(\\.|[^\"\\])*\"|'(\\.|[^'\\])*'", '""', css)
    stack: list[bool] = []  # True for an @ rule's block
    nested = []
    prelude_start = 0
    for at, char in enumerate(css):
        if char == "{":
            prelude = css[prelude_start:at].strip()
            is_at = prelude.startswith("@")
            if is_at and any(stack):
                nested.append(prelude)
            stack.append(is_at)
            prelude_start = at + 1
        elif char == "}":
            if stack:
                stack.pop()
            prelude_start = at + 1
        elif char == ";":
            prelude_start = at + 1
    return nested


def test_css_nesting_finds_an_at_rule_inside_another() -> None:
    assert css_nesting("@media screen { @supports (x: y) { .a { b: c } } }") == ["@supports (x: y)"]
    assert css_nesting("@media screen { .a { b: c } } @media print { .b { c: d } }") == []
    assert css_nesting("@import 'x.css'; .a { content: '{ @media' }") == []


def test_the_worst_case_html_stays_under_gmails_clipping() -> None:
    size = len(mail("worst").html.encode("utf-8"))
    assert size < MAX_HTML_BYTES, f"{size} bytes of HTML"


@pytest.mark.parametrize("name", SAMPLES)
def test_style_blocks_are_small_and_have_no_nested_at_rules(name: str) -> None:
    styles = document(name).styles
    assert sum(len(css.encode("utf-8")) for css in styles) < MAX_STYLE_BYTES
    assert [prelude for css in styles for prelude in css_nesting(css)] == []


def test_dark_mode_is_declared_and_styled() -> None:
    doc = document("five")
    metas = {
        m.attrs.get("name"): " ".join(m.attrs.get("content", "").split())
        for m in doc.find_all("meta")
    }
    assert metas.get("color-scheme") == "light dark"
    assert metas.get("supported-color-schemes") == "light dark"
    assert any(_DARK_MEDIA.search(css) for css in doc.styles), (
        "no @media (prefers-color-scheme: dark)"
    )


@pytest.mark.parametrize("name", ["five", "many"])
def test_the_preheader_comes_first_hidden_and_padded(name: str) -> None:
    doc = document(name)
    runs, text = doc.preheader()
    first = next(run.text.strip() for run in doc.texts if run.text.strip(PADDING))
    assert runs, f"the body's first text is visible: {first[:60]!r}"
    style = runs[0].element.style()
    hiding = [prop for prop, values in ALSO_HIDING.items() if style.get(prop) in values]
    # display:none where every client honours it; else zero size (Gmail's mobile webmail does
    # not honour display:none, and doiuse-email would report it).
    hidden = style.get("display") == "none" or style.get("font-size") in ("0", "0px")
    assert hidden and len(hiding) >= 2, f"preheader style {style}"
    assert re.match(rf"{matched(digest(name))} papers\b", text), text
    assert 30 <= len(text) <= 110, f"{len(text)} characters: {text!r}"
    raw = "".join(run.text for run in runs)
    after = raw[raw.rindex(text[-1]) + 1 :]
    padding = [c for c in after if c in PADDING and not c.isspace()]
    assert len(padding) >= 30, f"only {len(padding)} padding characters after the preheader"


@pytest.mark.parametrize("name", ["five", "worst"])
def test_lang_and_dir_on_html_and_the_article_wrapper(name: str) -> None:
    doc = document(name)
    (html,) = doc.find_all("html")
    assert (html.attrs.get("lang"), html.attrs.get("dir")) == ("en", "ltr")
    articles = doc.find_all("div", role="article")
    assert len(articles) == 1, "one <div role=article> wraps the mail"
    article = articles[0].attrs
    assert article.get("aria-roledescription") == "email"
    assert article.get("aria-label") == mail(name).subject
    assert (article.get("lang"), article.get("dir")) == ("en", "ltr")


@pytest.mark.parametrize("name", SAMPLES)
def test_layout_tables_are_presentational(name: str) -> None:
    tables = document(name).find_all("table")
    assert tables, "the layout is made of tables"
    assert [t.attrs for t in tables if t.attrs.get("role") != "presentation"] == []


def test_outlook_gets_a_600px_table_and_others_a_600px_body() -> None:
    html = mail("five").html
    conditional = re.findall(r"<!--\[if [^\]]*mso[^\]]*\]>(.*?)<!\[endif\]-->", html, re.S | re.I)
    assert any(
        re.search(r"<table\b[^>]*\bwidth=[\"']?600\b", block, re.I) for block in conditional
    ), "no 600 px table for Outlook inside <!--[if mso]>"
    wide = [
        e
        for e in document("five").elements
        if e.style().get("max-width") == "600px" or e.attrs.get("width") == "600"
    ]
    assert wide, "no element 600 px wide outside Outlook's conditional table"


@pytest.mark.parametrize("name", SAMPLES)
def test_no_css_mail_clients_cannot_show(name: str) -> None:
    doc = document(name)
    inline = [e.attrs["style"] for e in doc.elements if "style" in e.attrs]
    found = [m.group() for css in [*inline, *doc.styles] for m in _UNSUPPORTED_CSS.finditer(css)]
    assert found == []
    assert doc.find_all("svg") == [] and "<svg" not in mail(name).html.lower()


@pytest.mark.parametrize("name", SAMPLES)
def test_plain_text_lines_are_short_unless_a_lone_url(name: str) -> None:
    long = [
        line
        for line in mail(name).text.splitlines()
        if len(line) > MAX_LINE and urls(line) != [line.strip()]
    ]
    assert long == [], f"{len(long)} long lines, the first: {long[:1]}"


@pytest.mark.parametrize("name", SAMPLES)
def test_plain_text_has_no_html_entities(name: str) -> None:
    assert _ENTITY.findall(mail(name).text) == []


@pytest.mark.parametrize("name", SAMPLES)
def test_both_parts_show_the_same_papers_in_the_same_order_numbered(name: str) -> None:
    d, rendered = digest(name), mail(name)
    wanted = [entry.url for entry in d.entries]
    hrefs = [a.attrs.get("href", "") for a in document(name).find_all("a")]
    assert [url for url in dict.fromkeys(hrefs) if url in wanted] == wanted
    text = rendered.text
    at = [text.find(url) for url in wanted]
    assert -1 not in at and at == sorted(at), "the text part lists the papers in another order"
    numbers = [m.group(1) for m in re.finditer(r"^\s*(\d+)\.\s", text, re.MULTILINE)]
    assert numbers[: len(wanted)] == [str(n) for n in range(1, len(wanted) + 1)]


@pytest.mark.parametrize("name", SAMPLES)
def test_the_subject_is_at_most_78_characters(name: str) -> None:
    subject = mail(name).subject
    assert len(subject) <= SUBJECT_MAX, f"{len(subject)} characters: {subject!r}"
    assert not [c for c in subject if unicodedata.category(c) in ("Cc", "Zl", "Zp")], subject


def one_paper_digest(**paper: object) -> tuple[Digest, RenderedMail]:
    """The digest of one paper matched by the query "oracle", and its rendering."""
    fields: dict[str, object] = {
        "id": 1,
        "uid": "2403.00001",
        "title": "An oracle for language models",
        "abstract": "We build an oracle. It answers questions about language models.",
        "url": "https://arxiv.org/abs/2403.00001",
        "dump_date": mail_samples.SAMPLE_DAY,
        "stored_at": mail_samples.STORED,
        **paper,
    }
    papers = {1: CandidatePaper(**fields)}  # type: ignore[arg-type]
    query = ((QuerySource("query", "oracle"), "oracle"),)
    d = mail_samples.planned_digest(query, papers)
    return d, render_digest(d)


def test_a_byline_names_four_authors_then_et_al() -> None:
    authors = ("Ada Quill", "Bruno Ferreira-Lima", "Chiara Benedetti", "Dana Okafor")
    more = ("Émile Garnier", "Fei Wong", "Hana Sato")
    _, rendered = one_paper_digest(authors=authors + more)
    html_text = MailDocument(rendered.html).body_text()
    text = " ".join(rendered.text.split())
    for part in (html_text, text):
        assert ", ".join(authors) + " et al." in part
        assert not any(name in part for name in more)


def test_the_abstract_is_cut_near_snippet_chars_at_a_boundary() -> None:
    limit = DigestSettings().snippet_chars
    d = digest("five")
    full = " ".join(d.entries[0].abstract.split())
    assert len(full) > limit + 100, "the first paper's abstract is long enough to be cut"
    blocks = [b for b in document("five").blocks() if b.startswith(full[:40])]
    assert len(blocks) == 1, "the first paper's abstract is shown once"
    shown = blocks[0].rstrip("…").rstrip(".").rstrip()
    assert limit // 2 <= len(shown) <= limit, f"{len(shown)} characters shown"
    assert full.startswith(shown)
    rest = full[len(shown) :]
    assert rest[:1].isspace() or rest[:1] in ".!?" or shown.endswith((".", "!", "?"))
    text = " ".join(mail("five").text.split())
    assert full[:100] in text and full[: limit + 40] not in text


def test_latex_shows_as_readable_text() -> None:
    _, rendered = one_paper_digest(
        title=r"$\alpha$-divergence oracles with \textbf{Robust} guarantees",
        abstract=r"An oracle minimising the $\alpha$-divergence is \emph{fast} in $O(n)$ steps.",
    )
    html_text = MailDocument(rendered.html).body_text()
    text = " ".join(rendered.text.split())
    for part in (html_text, text, rendered.subject):
        assert "α-divergence" in part
        assert "$" not in part and _LATEX_COMMAND.findall(part) == []
    assert "Robust guarantees" in html_text and "Robust guarantees" in text


def test_the_header_counts_and_links_to_the_browser_view() -> None:
    for name in ("five", "many"):
        d, doc = digest(name), document(name)
        counts = f"{matched(d)} of {d.new_count} new papers matched your {d.query_count} queries"
        assert re.search(rf"\b{counts} · Mar 14\b", doc.body_text()), counts
        views = [a for a in doc.find_all("a", href=d.view_url or "")]
        assert [" ".join(a.text.split()) for a in views][:1] == ["View in browser"]


def test_the_footer_links_manage_pause_unsubscribe_and_says_why() -> None:
    d, doc, rendered = digest("five"), document("five"), mail("five")
    hrefs = {a.attrs.get("href") for a in doc.find_all("a")}
    for url in (d.manage_url, d.pause_url, d.unsubscribe_url):
        assert url in hrefs and url in rendered.text
    assert "because" in doc.body_text() and "because" in rendered.text
