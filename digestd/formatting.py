"""Text for digests: untrusted text cleaned, wrapped for the plain part, and highlighted and
escaped for the HTML part. Pure functions; the results of the costly ones are cached, since
one day's papers appear in many digests."""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache

import markupsafe

TEXT_WIDTH = 72
HIT_OPEN = '<mark class="hit">'
# Control characters (C0, DEL, C1) are invalid in HTML and can drive terminals when a text
# part is printed; together with Unicode line separators they become plain spaces.
_UNSAFE_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\ue000\ue001]+")
# Private-use characters that stand for <mark> and </mark> while a field is escaped in one call;
# they are removed from untrusted text first (isprintable() is false for them).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_CACHE_SIZE = 16_384


@lru_cache(maxsize=_CACHE_SIZE)
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


@lru_cache(maxsize=_CACHE_SIZE)
def list_item(text: str, number: int, width: int = TEXT_WIDTH) -> str:
    """``text`` wrapped as item ``number`` of a numbered list: "1.  First line" and the next
    lines indented by four spaces (by the number's width past 99)."""
    first = f"{number}.".ljust(3) + " "
    return wrap_text(text, width, " " * len(first), first)


@lru_cache(maxsize=16)
def _line_pattern(width: int) -> re.Pattern[str]:
    """Matches one wrapped line: as many words as fit in ``width``, or one longer word."""
    return re.compile(rf"(\S.{{0,{width - 1}}}(?= |$)|\S+)(?: |$)")


def clean_text(text: str) -> str:
    """``text`` on one line: control characters and runs of whitespace become single spaces."""
    # Most text needs no substitution, and isprintable() is false for every character that does.
    return text.strip() if text.isprintable() else _UNSAFE_OR_SPACE.sub(" ", text).strip()


def highlighted_field(
    segments: tuple[tuple[str, bool], ...], *, limit: int | None, hit_open: str
) -> tuple[str, markupsafe.Markup]:
    """The plain text of ``segments`` and its escaped HTML, the marked ones in ``hit_open``.

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
        str(markupsafe.escape(joined)).replace(_MARK_OPEN, hit_open).replace(_MARK_CLOSE, "</mark>")
    )
    return plain, markupsafe.Markup(html)
