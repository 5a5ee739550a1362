"""A paper's title and abstract as a digest shows them: untrusted text cleaned, LaTeX turned
into readable text, cut near a length at a sentence (or word) boundary, and escaped for HTML with
the matched words highlighted. Pure functions; callers cache per paper, since one day's papers
appear in many digests."""

from __future__ import annotations

import re
from functools import lru_cache

import markupsafe
from pylatexenc.latex2text import LatexNodes2Text

# Control characters (C0, DEL, C1) are invalid in HTML and can drive terminals when a text
# part is printed; together with Unicode line separators and the bidirectional overrides (which
# make a title read backwards, or hide what follows) they become plain spaces. The two
# private-use characters stand for the start and end of a highlight while a field is worked on,
# so they are removed from untrusted text first.
_UNSAFE_OR_SPACE = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ue000\ue001]+"
)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKS = re.compile("[\ue000\ue001]")
_SPACES = re.compile(r"[ \xa0]{2,}")
_LONG_WORD_SIZE = 40  # characters of a word (not a link) that would overflow a phone's width
_LONG_WORD = re.compile(r"[^\s/]{40,}")
_ADJACENT_MARKS = re.compile("\ue001([ \xa0]*)\ue000")
# LaTeX is converted only where the text has some: math between dollars, or a command.
_HAS_LATEX = re.compile(r"\$[^$]+\$|\\[A-Za-z]+")
# Characters LaTeX treats specially but abstracts use as plain text ("50%", "R&D", "#1").
_LITERAL = re.compile(r"(?<!\\)([%&#])")
# A piece of LaTeX: math between dollars, a group opened by a command ({\\it x}), or a command
# with its optional and braced arguments.
_LATEX_ISLAND = re.compile(
    r"\$\$?[^$]{1,400}?\$\$?|\{\\[A-Za-z]+\s[^{}]*\}|\\[A-Za-z]+\*?(?:\[[^\]]*\])?(?:\{[^{}]*\})*"
)
_ISLANDS_KEPT = 8192  # converted pieces of LaTeX remembered: a busy day's papers
_CITATION = re.compile(r" ?~?\\(?:cite|citep|citet|ref|eqref|label)\*?\{[^}]*\}")
# The end of a sentence: its mark, a closing quote or bracket, then space and a capital or digit.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]?(?=\s+[A-Z0-9\"“(])")
_SLACK = 1.1  # a text up to 10% over its limit is kept whole rather than cut a few words short
_SENTENCE_FLOOR = 0.6  # a sentence end is used only past 60% of the limit; else a word boundary


def clean_text(text: str) -> str:
    """``text`` on one line: control characters and runs of whitespace become single spaces."""
    # Most text needs no substitution, and isprintable() is false for every character that does.
    return text.strip() if text.isprintable() else _UNSAFE_OR_SPACE.sub(" ", text).strip()


@lru_cache(maxsize=1)
def _latex_converter() -> LatexNodes2Text:
    return LatexNodes2Text(math_mode="text", strict_latex_spaces=True)


def readable_latex(text: str) -> str:
    """``text`` with its LaTeX shown as readable text: ``$\\alpha$-divergence`` becomes
    "α-divergence", ``\\textbf{X}`` "X"; citations and labels are dropped. Only the LaTeX in
    it is converted (math between dollars, commands with their arguments), each piece once
    however many digests show it; the rest, highlights included, stays as it is."""
    if ("$" not in text and "\\" not in text) or not _HAS_LATEX.search(text):
        return text
    return _LATEX_ISLAND.sub(_island_text, _CITATION.sub("", text))


def _island_text(match: re.Match[str]) -> str:
    island = match.group()
    # A highlight inside LaTeX cannot be kept through the conversion: the words stay, unmarked.
    return _converted_island(_MARKS.sub("", island) if _MARK_OPEN in island else island)


@lru_cache(maxsize=_ISLANDS_KEPT)
def _converted_island(island: str) -> str:
    """One piece of LaTeX as text (as it is, if the converter cannot read it)."""
    try:
        converted = _latex_converter().latex_to_text(_LITERAL.sub(r"\\\1", island))
    except Exception:  # a converter failure must not stop a digest
        return island
    return _SPACES.sub(" ", converted) if converted.strip() else island


def breakable(text: str) -> str:
    """``text`` with a zero-width space every 30 characters of a very long word (not a link),
    so a hostile title cannot push a phone's screen wide."""
    # Splitting is several times quicker than a regular expression that finds no long word.
    if len(text) < _LONG_WORD_SIZE or max(map(len, text.split())) < _LONG_WORD_SIZE:
        return text
    return _LONG_WORD.sub(_broken_word, text)


def _broken_word(match: re.Match[str]) -> str:
    word = match.group()
    return "\u200b".join([word[at : at + 30] for at in range(0, len(word), 30)])


def cut_point(plain: str, limit: int, *, sentences: bool) -> int:
    """Where ``plain`` is cut to be about ``limit`` characters long: its length when it is near
    enough; else after the last sentence that ends past 60% of the limit (with ``sentences``),
    else at the last word boundary before the limit, else at the limit."""
    if len(plain) <= limit * _SLACK:
        return len(plain)
    if sentences:
        ends = [m.end() for m in _SENTENCE_END.finditer(plain, int(limit * _SENTENCE_FLOOR))]
        ends = [end for end in ends if end <= limit]
        if ends:
            return ends[-1]
    space = plain.rfind(" ", 0, limit + 1)
    return space if space > 0 else limit


def highlighted_field(
    segments: tuple[tuple[str, bool], ...],
    *,
    limit: int | None,
    hit_open: str,
    hit_close: str = "</span>",
    sentences: bool = False,
) -> tuple[str, markupsafe.Markup]:
    """The plain text of ``segments`` and its escaped HTML, the marked ones between
    ``hit_open`` and ``hit_close``.

    Control characters become spaces and LaTeX readable text. With a ``limit``, a longer text
    is cut (see ``cut_point``) and ends with an ellipsis.
    """
    joined = "".join(
        [
            f"{_MARK_OPEN}{_clean_segment(text)}{_MARK_CLOSE}" if marked else _clean_segment(text)
            for text, marked in segments
            if text
        ]
    )
    # Neighbouring highlights become one ("<hit>kv cache</hit>", not two spans).
    joined = breakable(_ADJACENT_MARKS.sub(r"\1", readable_latex(joined).strip()))
    plain = _MARKS.sub("", joined)
    if limit is not None:
        cut = cut_point(plain, limit, sentences=sentences)
        if cut < len(plain):
            joined = _cut_marked(joined, cut)
            plain = _with_ellipsis(plain[:cut])
    # Escaping the whole field once, with private-use stand-ins for the tags, is several times
    # faster than escaping every segment.
    escaped = str(markupsafe.escape(joined))
    html = escaped.replace(_MARK_OPEN, hit_open).replace(_MARK_CLOSE, hit_close)
    return plain, markupsafe.Markup(html.replace(f"{hit_open}{hit_close}", ""))


def _clean_segment(text: str) -> str:
    return text if text.isprintable() else _UNSAFE_OR_SPACE.sub(" ", text)


def _cut_marked(joined: str, cut: int) -> str:
    """``joined`` (text with highlight stand-ins) cut after ``cut`` characters of its text, with
    an ellipsis, any highlight open at the cut closed."""
    seen = 0
    start = 0
    for found in _MARKS.finditer(joined):
        run = found.start() - start
        if seen + run >= cut:
            break
        seen += run
        start = found.end()
    end = start + (cut - seen)
    kept = joined[:end]
    opened = kept.rfind(_MARK_OPEN) > kept.rfind(_MARK_CLOSE)
    return _with_ellipsis(kept + (_MARK_CLOSE if opened else ""))


def _with_ellipsis(text: str) -> str:
    """``text`` marked as cut: "…" after a word, " …" after a whole sentence."""
    text = text.rstrip(" ,;:-")
    return text + (" …" if _MARKS.sub("", text).endswith((".", "!", "?")) else "…")
