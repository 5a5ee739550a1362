"""Rendering: the Jinja environment, digests to mails (subject, html, text), and plain pages.

Digests are rendered many thousands at a time, so the work that does not depend on the reader
is done once: the stylesheet is inlined into the HTML templates when they are loaded (not into
every message), and each paper's entry is rendered once and reused in every digest showing it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import markupsafe

from digestd.digest import Digest, DigestEntry
from digestd.formatting import (
    HIT_OPEN,
    MONTHS,
    clean_text,
    highlighted_field,
    list_item,
    wrap_text,
)
from digestd.template_css import inline_template_css, load_template

__all__ = [
    "ABSTRACT_LIMIT",
    "DigestRenderer",
    "RenderedMail",
    "default_templates_dir",
    "digest_subject",
    "inline_template_css",
    "render_digest",
    "render_page",
    "template_environment",
    "wrap_text",
]

# digestd/templates is a link to the top-level templates/ folder, so a checkout and an installed
# wheel find the same files.
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Abstracts are cut at a word boundary near this many characters: a digest is for skimming,
# the link leads to the full text, and short messages stay under webmail clipping limits.
ABSTRACT_LIMIT = 600

_MONTH_NAMES = (
    "January February March April May June July August September October November December"
)
_MONTHS_LONG = tuple(_MONTH_NAMES.split())
_NO_MARKUP = markupsafe.Markup("")
_MARK_TAG = re.compile(r"<mark\b[^>]*>")
# Rendered entries repeat across the digests of one run, since one day's papers go to many
# subscribers (an entry differs by its highlights and reasons); this covers a busy day.
_CACHE_SIZE = 16_384


@dataclass(frozen=True)
class RenderedMail:
    """A mail's subject, HTML and text, ready to be put into a message: a rendered digest, or
    a sign-up mail (confirmation, manage link) rendered by the web application.

    ``html_pieces`` and ``text_pieces``, when given, are ``html`` and ``text`` cut at line ends
    (each piece but the last ends with a newline), each with whether it is sure to recur in
    other digests (a paper's entry), so that a message writer can encode such pieces once.
    """

    subject: str
    html: str
    text: str
    html_pieces: tuple[tuple[str, bool], ...] = ()
    text_pieces: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class _EntryView:
    """An entry with its text cleaned and its abstract cut, as the templates use it; ``html``
    and ``text`` are its own rendered fragments (digest_entry.html and digest_entry.txt)."""

    title: str
    url: str
    link: str | None
    title_html: markupsafe.Markup
    abstract_html: markupsafe.Markup
    abstract: str
    matched_line: str
    authors: str  # the byline's first line
    details: str  # and its second: date, categories or source, upvotes
    html: markupsafe.Markup = _NO_MARKUP
    text: str = ""

    def with_fragments(self, html: markupsafe.Markup, text: str) -> _EntryView:
        """This entry with its rendered fragments (dataclasses.replace costs several times more)."""
        return _EntryView(
            self.title,
            self.url,
            self.link,
            self.title_html,
            self.abstract_html,
            self.abstract,
            self.matched_line,
            self.authors,
            self.details,
            html,
            text,
        )


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
    env.filters["list_item"] = list_item
    return env


def render_page(template_name: str, *, templates_dir: Path | None = None, **context: Any) -> str:
    """Render one template from the templates folder with ``context``."""
    return template_environment(templates_dir).get_template(template_name).render(**context)


def digest_subject(digest: Digest) -> str:
    """The subject line, e.g. "7 new papers for you — Mar 14"; counts papers shown and beyond."""
    count = len(digest.entries) + max(digest.more_count, 0)
    date = digest.digest_date
    when = f"{MONTHS[date.month - 1]} {date.day}"
    if count == 0:
        return f"No new papers for you — {when}"
    noun = "paper" if count == 1 else "papers"
    return f"{count} new {noun} for you — {when}"


def render_digest(digest: Digest, *, templates_dir: Path | None = None) -> RenderedMail:
    """The subject, the HTML part (CSS inlined) and the plain-text part of ``digest``."""
    return _renderer(templates_dir).render(digest)


class DigestRenderer:
    """Renders digests with one templates folder: digest.html and digest.txt for the message,
    digest_entry.html and digest_entry.txt for each paper in it.

    With ``inline_css`` the stylesheet (digest.css) is inlined into the HTML templates once, when
    they are loaded, so rendering a message only runs Jinja; without it the HTML keeps its class
    attributes unstyled. With ``cache_entries`` each entry's fragments are rendered once and
    reused: one day's papers go into many subscribers' digests. The fragments do not know their
    position, so the same entry is the same fragment wherever it is shown; digest.txt numbers
    the titles.
    """

    def __init__(
        self,
        templates_dir: Path | None = None,
        *,
        inline_css: bool = True,
        cache_entries: bool = True,
    ) -> None:
        """Load and compile the templates of ``templates_dir`` (default: the bundled ones)."""
        env = template_environment(templates_dir)
        css_path = Path(templates_dir or default_templates_dir()) / "digest.css"
        self.css = css_path.read_text(encoding="utf-8") if css_path.is_file() else ""
        self.hit_open = HIT_OPEN
        if inline_css:
            # The stylesheet is applied from outside the document, so no <style> element is
            # needed and nothing in a template can pull in remote stylesheets.
            inliner = css_inline.CSSInliner(extra_css=self.css, load_remote_stylesheets=False)
            self._html = load_template(env, "digest.html", inliner.inline)
            fragment = functools.partial(inliner.inline_fragment, css="")
            self._entry_html = load_template(env, "digest_entry.html", fragment)
            # Highlights are made per entry from text, so their tag carries its styles itself.
            found = _MARK_TAG.search(fragment(f"{HIT_OPEN}x</mark>"))
            self.hit_open = found.group() if found else HIT_OPEN
        else:
            self._html = load_template(env, "digest.html")
            self._entry_html = load_template(env, "digest_entry.html")
        self._globals = dict(env.globals)
        self._text = load_template(env, "digest.txt")
        self._entry_text = load_template(env, "digest_entry.txt")
        self._entry: Callable[[DigestEntry], _EntryView] = (
            lru_cache(maxsize=_CACHE_SIZE)(self._render_entry)
            if cache_entries
            else self._render_entry
        )

    def render(self, digest: Digest) -> RenderedMail:
        """The subject, the HTML part and the plain-text part of ``digest``."""
        entries = [self._entry(entry) for entry in digest.entries]
        context = _digest_context(digest, entries)
        html = self._run(self._html, context)
        text = self._run(self._text, context)
        return RenderedMail(
            context["subject"],
            html,
            text,
            html_pieces=_cut(html, [entry.html for entry in entries]),
            text_pieces=_cut(text, [entry.text for entry in entries]),
        )

    def _run(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """``template.render(context)`` without its per-call copy of the globals.

        Template.render merges the environment's globals (a ChainMap) into every context, which
        costs more than rendering a digest from cached entries; here they are merged once.
        """
        try:
            return "".join(
                template.root_render_func(
                    template.new_context(self._globals | context, shared=True)
                )
            )
        except Exception:
            # Rewrites the traceback to point at the template line, as render() does.
            template.environment.handle_exception()
        raise AssertionError("unreachable")

    def _render_entry(self, entry: DigestEntry) -> _EntryView:
        view = _entry_view(entry, self.hit_open)
        html = markupsafe.Markup(self._run(self._entry_html, {"entry": view}))
        return view.with_fragments(html, self._run(self._entry_text, {"entry": view}))


def _cut(whole: str, fragments: list[str]) -> tuple[tuple[str, bool], ...]:
    """``whole`` cut around each of ``fragments`` (in order) that it holds as whole lines, each
    piece marked with whether it is one of them. Such a piece is the fragment itself, so a later
    lookup by it is quick (its hash is kept, and equality is identity)."""
    pieces: list[tuple[str, bool]] = []
    start = 0
    for fragment in fragments:
        at = _find(whole, fragment, start)
        if at < 0 or not fragment.endswith("\n") or (at and whole[at - 1] != "\n"):
            continue
        if at > start:
            pieces.append((whole[start:at], False))
        pieces.append((fragment, True))
        start = at + len(fragment)
    if start < len(whole):
        pieces.append((whole[start:], False))
    return tuple(pieces)


def _find(whole: str, fragment: str, start: int) -> int:
    """Where ``fragment`` is in ``whole`` from ``start``, or -1; usually it comes right there or
    soon after, and searching for its first characters then comparing is much quicker than
    ``str.find`` with a long needle, which first studies the whole needle."""
    if whole.startswith(fragment, start):
        return start
    # str's own slicing: Markup's wraps every slice in another Markup, several times slower.
    lead = str.__getitem__(fragment, slice(64))
    at = whole.find(lead, start)
    while at >= 0 and not whole.startswith(fragment, at):
        at = whole.find(lead, at + 1)
    return at


@lru_cache(maxsize=8)
def _renderer(templates_dir: Path | None) -> DigestRenderer:
    return DigestRenderer(templates_dir)


def _digest_context(digest: Digest, entries: list[_EntryView]) -> dict[str, Any]:
    """The context of digest.html and digest.txt."""
    subject = digest_subject(digest)
    date = digest.digest_date
    more = max(digest.more_count, 0)
    return {
        "subject": subject,
        "site_name": clean_text(digest.site_name),
        "greeting_name": clean_text(digest.subscriber_name),
        "subscriber_email": clean_text(digest.subscriber_email),
        "date_long": f"{_MONTHS_LONG[date.month - 1]} {date.day}, {date.year}",
        "entries": entries,
        "more_line": _more_line(more, listed=bool(digest.more_papers)) if more else "",
        "more_papers": [
            {"title": clean_text(title), "url": clean_text(url), "link": _http_link(url)}
            for title, url in digest.more_papers
        ],
        "unlisted": more - len(digest.more_papers),
        "unsubscribe_url": clean_text(digest.unsubscribe_url),
        "manage_url": clean_text(digest.manage_url) if digest.manage_url else None,
    }


def _more_line(more: int, *, listed: bool) -> str:
    noun = "paper" if more == 1 else "papers"
    return f"and {more} more {noun} matched your subscriptions" + (":" if listed else ".")


def _http_link(url: str) -> str | None:
    """``url`` if it is safe to make clickable (http or https), else None."""
    return url if url.lower().startswith(("https://", "http://")) else None


def _entry_view(entry: DigestEntry, hit_open: str) -> _EntryView:
    title, title_html = highlighted_field(
        entry.title_segments or ((entry.title, False),), limit=None, hit_open=hit_open
    )
    abstract, abstract_html = highlighted_field(
        entry.abstract_segments or ((entry.abstract, False),),
        limit=ABSTRACT_LIMIT,
        hit_open=hit_open,
    )
    url = clean_text(entry.url)
    terms = ", ".join([clean_text(term) for term in entry.matched_terms if term.strip()])
    reasons = "; ".join([clean_text(reason) for reason in entry.reasons if reason.strip()])
    return _EntryView(
        title=title,
        url=url,
        link=_http_link(url),
        title_html=title_html,
        abstract_html=abstract_html,
        abstract=abstract,
        matched_line=f"{terms} — {reasons}" if terms and reasons else terms or reasons,
        authors=entry.byline.authors,
        details=entry.byline.details,
    )
