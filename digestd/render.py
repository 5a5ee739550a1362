"""Rendering: the Jinja environment, digests to mails (subject, html, text), and plain pages.

Digests are rendered many thousands at a time, so the work that does not depend on the reader
is done once: the stylesheet is inlined into the HTML templates when they are loaded (not into
every message), and each paper's entry is rendered once and reused in every digest showing it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import markupsafe

from digestd.digest import Digest, DigestEntry
from digestd.formatting import HIT_OPEN, list_item, wrap_text
from digestd.i18n import N_, translations
from digestd.mail_view import (
    MORE_LISTED,
    PREHEADER_PADDING,
    EntryView,
    MailOptions,
    entry_view,
    header_line,
    http_link,
    mail_options,
    preheader,
    subject_line,
    text_direction,
)
from digestd.snippets import breakable, clean_text
from digestd.template_css import inline_template_css, load_template

__all__ = [
    "DigestRenderer",
    "MailOptions",
    "RenderedMail",
    "default_templates_dir",
    "digest_subject",
    "inline_template_css",
    "mail_environment",
    "mail_options",
    "render_digest",
    "render_page",
    "template_environment",
    "wrap_text",
]

# digestd/templates is a link to the top-level templates/ folder, so a checkout and an installed
# wheel find the same files.
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"

_HIT_TAG = re.compile(r"<span\b[^>]*>")
# Rendered entries repeat across the digests of one run, since one day's papers go to many
# subscribers (an entry differs by its highlights and reasons); this covers a busy day.
_CACHE_SIZE = 16_384
_LINK_NAMES = {"abstract": N_("Abstract"), "pdf": N_("PDF"), "hf": N_("Hugging Face")}
_TEXT_WORD = 66  # a longer word (not a link) is broken so plain-text lines stay under 78


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


def default_templates_dir() -> Path:
    """The bundled templates folder (``[paths] templates`` overrides it)."""
    return PACKAGED_TEMPLATES


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja environment on ``templates_dir`` with autoescaping and strict undefined names."""
    return _environment(templates_dir)


@lru_cache(maxsize=16)
def mail_environment(templates_dir: Path | None, language: str) -> jinja2.Environment:
    """The digest templates' environment for one language: ``template_environment`` with the
    gettext calls (``_``, ``gettext``, ``ngettext``, ``{% trans %}``) of that language's
    catalog. Each language has an environment of its own: the translations live in its
    globals, which an overlay would share with every other language."""
    env = _environment(templates_dir, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["text_item"] = _text_item
    env.filters["text_wrap"] = _text_wrap
    return env


def _environment(templates_dir: Path | None, extensions: Sequence[str] = ()) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir or default_templates_dir())),
        autoescape=jinja2.select_autoescape(["html", "xml", "htm"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=list(extensions),
    )
    env.filters["wrap_text"] = wrap_text
    env.filters["list_item"] = list_item
    return env


def render_page(template_name: str, *, templates_dir: Path | None = None, **context: Any) -> str:
    """Render one template from the templates folder with ``context``."""
    return template_environment(templates_dir).get_template(template_name).render(**context)


def digest_subject(digest: Digest, options: MailOptions | None = None) -> str:
    """The subject line of ``digest`` (see ``mail_view.subject_line``)."""
    return subject_line(digest, options or MailOptions(), translations(digest.language))


def render_digest(
    digest: Digest, *, templates_dir: Path | None = None, options: MailOptions | None = None
) -> RenderedMail:
    """The subject, the HTML part (CSS inlined) and the plain-text part of ``digest``, in the
    subscriber's language, shaped by the ``[digest]`` settings in ``options``."""
    return _renderer(templates_dir, digest.language, options or MailOptions()).render(digest)


class DigestRenderer:
    """Renders digests with one templates folder and language: digest.html and digest.txt for
    the message, digest_entry.html and digest_entry.txt for each paper shown whole.

    With ``inline_css`` the stylesheet (digest.css) is inlined into the HTML templates once, when
    they are loaded, so rendering a message only runs Jinja; without it the HTML keeps its class
    attributes unstyled. With ``cache_entries`` each entry's view and fragments are made once
    and reused: one day's papers go into many subscribers' digests. The fragments do not know
    their position, so the same entry is the same fragment wherever it is shown; digest.html
    and digest.txt number them.
    """

    def __init__(
        self,
        templates_dir: Path | None = None,
        *,
        language: str = "en",
        options: MailOptions | None = None,
        inline_css: bool = True,
        cache_entries: bool = True,
    ) -> None:
        """Load and compile the templates of ``templates_dir`` (default: the bundled ones)."""
        env = mail_environment(templates_dir, language)
        self.language = language
        self.options = options or MailOptions()
        self.translations = translations(language)
        # The words of each kind of paper link (Abstract, PDF, ...) in this language.
        self.link_names = {
            kind: self.translations.gettext(name) for kind, name in _LINK_NAMES.items()
        }
        css_path = Path(templates_dir or default_templates_dir()) / "digest.css"
        self.css = css_path.read_text(encoding="utf-8") if css_path.is_file() else ""
        self.hit_open = HIT_OPEN
        if inline_css:
            # The stylesheet is applied from outside the document; the <style> block in
            # digest.html (dark mode, small screens) is kept as it is.
            inliner = css_inline.CSSInliner(
                extra_css=self.css, load_remote_stylesheets=False, keep_style_tags=True
            )
            self._html = load_template(env, "digest.html", inliner.inline)
            fragment = functools.partial(inliner.inline_fragment, css="")
            self._entry_html = load_template(env, "digest_entry.html", fragment)
            # Highlights are made per entry from text, so their tag carries its styles itself.
            found = _HIT_TAG.search(fragment(f"{HIT_OPEN}x</span>"))
            self.hit_open = found.group() if found else HIT_OPEN
        else:
            self._html = load_template(env, "digest.html")
            self._entry_html = load_template(env, "digest_entry.html")
        self._globals = dict(env.globals)
        self._text = load_template(env, "digest.txt")
        self._entry_text = load_template(env, "digest_entry.txt")
        self._entry: Callable[[DigestEntry, bool], EntryView] = (
            lru_cache(maxsize=_CACHE_SIZE)(self._render_entry)
            if cache_entries
            else self._render_entry
        )

    def render(self, digest: Digest) -> RenderedMail:
        """The subject, the HTML part and the plain-text part of ``digest``."""
        whole = max(self.options.full_entries, 0)
        entries = [self._entry(entry, True) for entry in digest.entries[:whole]]
        compact = [self._entry(entry, False) for entry in digest.entries[whole:]]
        context = self._context(digest, entries, compact)
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

    def _render_entry(self, entry: DigestEntry, whole: bool) -> EntryView:
        view = entry_view(
            entry,
            language=self.language,
            translations=self.translations,
            hit_open=self.hit_open,
            snippet_chars=self.options.snippet_chars,
        )
        if not whole:
            return view
        context = {"entry": view, "link_names": self.link_names}
        html = markupsafe.Markup(self._run(self._entry_html, context))
        return dataclasses.replace(view, html=html, text=self._run(self._entry_text, context))

    def _context(
        self, digest: Digest, entries: list[EntryView], compact: list[EntryView]
    ) -> dict[str, Any]:
        """The context of digest.html and digest.txt."""
        gettext, ngettext = self.translations.gettext, self.translations.ngettext
        more = max(digest.more_count, 0)
        listed = digest.more_papers[: max(MORE_LISTED - len(compact), 0)]
        more_total = len(compact) + more
        subject = subject_line(digest, self.options, self.translations)
        return {
            "subject": subject,
            "lang": self.language,
            "dir": text_direction(self.language),
            "preheader": preheader(digest, self.translations),
            "preheader_padding": PREHEADER_PADDING,
            "site_name": breakable(clean_text(digest.site_name)),
            "header_line": header_line(digest, self.translations),
            "subscriber_email": clean_text(digest.subscriber_email),
            "entries": entries,
            "compact": compact,
            "full_count": len(entries),
            "more_total": more_total,
            "more_heading": ngettext("%(num)d more paper", "%(num)d more papers", more_total)
            % {"num": more_total},
            "more_papers": [
                {
                    "title": breakable(clean_text(title)),
                    "url": clean_text(url),
                    "link": http_link(url),
                }
                for title, url in listed
            ],
            "unlisted": more - len(listed),
            "view_url": clean_text(digest.view_url) if digest.view_url else None,
            "pause_url": clean_text(digest.pause_url) if digest.pause_url else None,
            "unsubscribe_url": clean_text(digest.unsubscribe_url),
            "manage_url": clean_text(digest.manage_url) if digest.manage_url else None,
            "query_count": digest.query_count,
            "why_line": gettext(
                "You receive this digest because you subscribed to %(site)s as %(email)s."
            )
            % {
                "site": breakable(clean_text(digest.site_name)),
                "email": breakable(clean_text(digest.subscriber_email)),
            },
        }


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
def _renderer(templates_dir: Path | None, language: str, options: MailOptions) -> DigestRenderer:
    return DigestRenderer(templates_dir, language=language, options=options)


def _text_wrap(text: str, indent: str = "    ") -> str:
    """``text`` wrapped for the plain part, words too long for a line broken (links kept)."""
    return wrap_text(_break_words(text), indent=indent)


def _text_item(text: str, number: int) -> str:
    """``text`` as item ``number`` of the plain part's numbered list, long words broken."""
    return list_item(_break_words(text), number)


def _break_words(text: str) -> str:
    """``text`` with every word over 66 characters that is not a link cut into pieces."""
    if "\u200b" in text:
        text = text.replace("\u200b", "")
    if max(map(len, text.split()), default=0) <= _TEXT_WORD:
        return text
    words = text.split(" ")
    out: list[str] = []
    for word in words:
        if len(word) > _TEXT_WORD and not http_link(word):
            out.extend(word[at : at + _TEXT_WORD] for at in range(0, len(word), _TEXT_WORD))
        else:
            out.append(word)
    return " ".join(out)
