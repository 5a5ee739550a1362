"""Rendering: the Jinja environment, digests to (subject, html, text), and plain pages."""

from __future__ import annotations

import datetime
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import markupsafe

# digestd/templates is a link to the top-level templates/ folder, so a checkout and an installed
# wheel find the same files.
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Abstracts are cut at a word boundary near this many characters: a digest is for skimming,
# the link leads to the full text, and short messages stay under webmail clipping limits.
ABSTRACT_LIMIT = 600
TEXT_WIDTH = 72

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS_LONG = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Control characters (C0, DEL, C1) are invalid in HTML and can drive terminals when a text
# part is printed; together with Unicode line separators they become plain spaces.
_UNSAFE_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\ue000\ue001]+")
# Private-use characters that stand for <mark> and </mark> while a field is escaped in one call;
# they are removed from untrusted text first (isprintable() is false for them).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"


@dataclass(frozen=True)
class DigestEntry:
    """One matched paper as shown in a digest."""

    uid: str
    title: str
    abstract: str
    url: str
    score: float
    reasons: tuple[str, ...]
    matched_terms: tuple[str, ...]
    title_segments: tuple[tuple[str, bool], ...]
    abstract_segments: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class Digest:
    """Everything one subscriber's digest for one day shows."""

    subscriber_name: str
    subscriber_email: str
    digest_date: datetime.date
    entries: tuple[DigestEntry, ...]
    more_count: int
    unsubscribe_url: str
    manage_url: str | None
    site_name: str
    # (title, url) of papers past the cap, listed by title only; may be fewer than more_count
    more_papers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RenderedDigest:
    """A digest ready to be put into a message."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class _EntryView:
    """An entry with its text cleaned and its abstract cut, as the templates use it."""

    number: int
    title: str
    url: str
    link: str | None
    title_html: markupsafe.Markup
    abstract_html: markupsafe.Markup
    abstract: str
    matched_line: str


@dataclass(frozen=True, slots=True)
class _Renderer:
    html: jinja2.Template
    text: jinja2.Template
    inliner: css_inline.CSSInliner


def default_templates_dir() -> Path:
    """The bundled templates folder (``[paths] templates`` overrides it)."""
    return PACKAGED_TEMPLATES


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja environment on ``templates_dir`` with autoescaping and strict undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir or default_templates_dir())),
        autoescape=jinja2.select_autoescape(["html", "xml", "htm"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap_text"] = wrap_text
    return env


def render_page(template_name: str, *, templates_dir: Path | None = None, **context: Any) -> str:
    """Render one template from the templates folder with ``context``."""
    return template_environment(templates_dir).get_template(template_name).render(**context)


def wrap_text(
    text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None
) -> str:
    """``text`` wrapped at ``width`` columns, lines indented by ``indent`` (the first by ``first``).

    Whitespace is collapsed; long words such as URLs are kept whole rather than broken. The
    result is the same as ``textwrap.fill(..., break_long_words=False, break_on_hyphens=False)``.
    """
    first = indent if first is None else first
    words = " ".join(text.split())
    if len(first) == len(indent):
        # One regular expression pass is several times faster than textwrap, which matters
        # when thousands of digests are rendered in a run.
        lines = _line_pattern(max(width - len(indent), 1)).findall(words) or [""]
        return "\n".join([first + lines[0], *(indent + line for line in lines[1:])])
    return textwrap.fill(
        words,
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


@lru_cache(maxsize=16)
def _line_pattern(width: int) -> re.Pattern[str]:
    """Matches one wrapped line: as many words as fit in ``width``, or one longer word."""
    return re.compile(rf"(\S.{{0,{width - 1}}}(?= |$)|\S+)(?: |$)")


def clean_text(text: str) -> str:
    """``text`` on one line: control characters and runs of whitespace become single spaces."""
    # Most text needs no substitution, and isprintable() is false for every character that does.
    return text.strip() if text.isprintable() else _UNSAFE_OR_SPACE.sub(" ", text).strip()


def digest_subject(digest: Digest) -> str:
    """The subject line, e.g. "7 new papers for you — Mar 14"; counts papers shown and beyond."""
    count = len(digest.entries) + max(digest.more_count, 0)
    date = digest.digest_date
    when = f"{_MONTHS[date.month - 1]} {date.day}"
    if count == 0:
        return f"No new papers for you — {when}"
    noun = "paper" if count == 1 else "papers"
    return f"{count} new {noun} for you — {when}"


def render_digest(digest: Digest, *, templates_dir: Path | None = None) -> RenderedDigest:
    """The subject, the HTML part (CSS inlined) and the plain-text part of ``digest``."""
    renderer = _renderer(templates_dir)
    subject = digest_subject(digest)
    date = digest.digest_date
    more = max(digest.more_count, 0)
    context = {
        "subject": subject,
        "site_name": clean_text(digest.site_name),
        "greeting_name": clean_text(digest.subscriber_name),
        "subscriber_email": clean_text(digest.subscriber_email),
        "date_long": f"{_MONTHS_LONG[date.month - 1]} {date.day}, {date.year}",
        "entries": [_entry_view(number, entry) for number, entry in enumerate(digest.entries, 1)],
        "more_line": _more_line(more, listed=bool(digest.more_papers)) if more else "",
        "more_papers": [
            {"title": clean_text(title), "url": clean_text(url), "link": _http_link(url)}
            for title, url in digest.more_papers
        ],
        "unlisted": more - len(digest.more_papers),
        "unsubscribe_url": clean_text(digest.unsubscribe_url),
        "manage_url": clean_text(digest.manage_url) if digest.manage_url else None,
    }
    html = renderer.inliner.inline(renderer.html.render(context))
    text = renderer.text.render(context)
    return RenderedDigest(subject=subject, html=html, text=text)


@lru_cache(maxsize=8)
def _renderer(templates_dir: Path | None) -> _Renderer:
    env = template_environment(templates_dir)
    css_path = Path(templates_dir or default_templates_dir()) / "digest.css"
    css = css_path.read_text(encoding="utf-8") if css_path.is_file() else None
    return _Renderer(
        html=env.get_template("digest.html"),
        text=env.get_template("digest.txt"),
        # The stylesheet is applied from outside the document, so no <style> element is needed
        # and nothing in a message can pull in remote stylesheets.
        inliner=css_inline.CSSInliner(extra_css=css, load_remote_stylesheets=False),
    )


def _more_line(more: int, *, listed: bool) -> str:
    noun = "paper" if more == 1 else "papers"
    return f"and {more} more {noun} matched your subscriptions" + (":" if listed else ".")


def _http_link(url: str) -> str | None:
    """``url`` if it is safe to make clickable (http or https), else None."""
    return url if url.lower().startswith(("https://", "http://")) else None


def _entry_view(number: int, entry: DigestEntry) -> _EntryView:
    title, title_html = _field(entry.title_segments or ((entry.title, False),), limit=None)
    abstract, abstract_html = _field(
        entry.abstract_segments or ((entry.abstract, False),), limit=ABSTRACT_LIMIT
    )
    url = clean_text(entry.url)
    terms = ", ".join([clean_text(term) for term in entry.matched_terms if term.strip()])
    reasons = "; ".join([clean_text(reason) for reason in entry.reasons if reason.strip()])
    return _EntryView(
        number=number,
        title=title,
        url=url,
        link=_http_link(url),
        title_html=title_html,
        abstract_html=abstract_html,
        abstract=abstract,
        matched_line=f"{terms} — {reasons}" if terms and reasons else terms or reasons,
    )


def _field(
    segments: tuple[tuple[str, bool], ...], *, limit: int | None
) -> tuple[str, markupsafe.Markup]:
    """The plain text of ``segments`` and its escaped HTML with the marked ones in ``<mark>``.

    Control characters become spaces. With a ``limit``, the text is cut at the last word
    boundary before that many characters and ends with an ellipsis.
    """
    texts: list[str] = []
    marks: list[bool] = []
    length = 0
    truncated = False
    for text, marked in segments:
        if not text:
            continue
        # isprintable() is false for every character the substitution would touch, and is
        # much cheaper than the substitution most segments do not need.
        if not text.isprintable():
            text = _UNSAFE_OR_SPACE.sub(" ", text)
        if not texts:
            text = text.lstrip()
        if limit is not None and length + len(text) > limit:
            room = limit - length
            space = text.rfind(" ", 0, room + 1)
            if space > 0:
                texts.append(text[:space])
                marks.append(marked)
            elif not texts:
                texts.append(text[:room])
                marks.append(marked)
            truncated = True
            break
        texts.append(text)
        marks.append(marked)
        length += len(text)
    tail = " ,;:.-" if truncated else " "
    while texts and not texts[-1].rstrip(tail):
        texts.pop()
        marks.pop()
    if texts:
        texts[-1] = texts[-1].rstrip(tail) + ("…" if truncated else "")
    plain = "".join(texts)
    # Escaping the whole field once, with private-use stand-ins for the tags, is several
    # times faster than escaping every segment.
    joined = "".join(
        [
            f"{_MARK_OPEN}{text}{_MARK_CLOSE}" if marked else text
            for text, marked in zip(texts, marks, strict=True)
        ]
    )
    html = (
        str(markupsafe.escape(joined))
        .replace(_MARK_OPEN, '<mark class="hit">')
        .replace(_MARK_CLOSE, "</mark>")
    )
    return plain, markupsafe.Markup(html)
