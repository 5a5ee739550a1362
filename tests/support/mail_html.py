"""A digest's HTML part read the way the mail tests need it: elements with their attributes,
inline styles and ancestors, the body's text in order, the <style> blocks and the comments
(where Outlook's conditional markup lives). Built on the standard library's HTMLParser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
NOT_TEXT = {"style", "script", "title", "head"}
# What a preheader is padded with so that clients do not pull body text into the preview.
PADDING = "\u034f\u200c\u200b\u200d\u00a0\u2007\u00ad\ufeff \t\r\n"
_URL = re.compile(r"https?://\S+")


@dataclass(eq=False)
class Element:
    """One element: its tag, attributes (values unescaped), parent and text within."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None
    pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All text inside the element, as written (whitespace kept)."""
        return "".join(self.pieces)

    def style(self) -> dict[str, str]:
        """The inline style's declarations, property -> value, lower-cased, no !important."""
        found = {}
        for declaration in self.attrs.get("style", "").split(";"):
            name, colon, value = declaration.partition(":")
            if colon:
                value = value.lower().replace("!important", "").strip()
                found[name.strip().lower()] = " ".join(value.split())
        return found

    def ancestors(self) -> list[Element]:
        """The element itself, then its parent, up to <html>."""
        chain: list[Element] = []
        node: Element | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def hidden(self) -> bool:
        """Whether inline styles hide the element or one of its ancestors: ``display:none``, or
        a zero font size with a zero maximum height (for clients that ignore display:none)."""
        return any(_hides(node.style()) for node in self.ancestors())


@dataclass(frozen=True)
class TextRun:
    """A run of text in the body and the element it is directly in."""

    text: str
    element: Element


class MailDocument(HTMLParser):
    """The parsed HTML part: ``elements`` in document order, ``texts`` (the body's text runs),
    ``styles`` (the text of each <style> block) and ``comments``."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.texts: list[TextRun] = []
        self.styles: list[str] = []
        self.comments: list[str] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(
            tag, {k: v or "" for k, v in attrs}, self._open[-1] if self._open else None
        )
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self._open and self._open[-1].tag == tag:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not self._open:
            return
        here = self._open[-1]
        if here.tag == "style":
            self.styles.append(data)
        if any(node.tag in NOT_TEXT for node in self._open):
            return
        for node in self._open:
            node.pieces.append(data)
        if any(node.tag == "body" for node in self._open):
            self.texts.append(TextRun(data, here))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        """The elements with ``tag`` and these attribute values (``class_`` for class)."""
        wanted = {key.rstrip("_"): value for key, value in attrs.items()}
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def body_text(self) -> str:
        """The body's visible text (not hidden by inline ``display:none``), whitespace collapsed."""
        return " ".join(
            " ".join(run.text for run in self.texts if not run.element.hidden()).split()
        )

    def preheader(self) -> tuple[list[TextRun], str]:
        """The hidden text runs before the first visible text of the body, and their text with
        the padding after it removed (the preview text a client shows)."""
        runs = []
        for run in self.texts:
            if not run.text.strip(PADDING):
                if runs:
                    runs.append(run)
                continue
            if not run.element.hidden():
                break
            runs.append(run)
        return runs, " ".join("".join(run.text for run in runs).strip(PADDING).split())

    def blocks(self) -> list[str]:
        """The text of each innermost block (p, div, td, li, headings), whitespace collapsed."""
        blocks = {"p", "div", "td", "th", "li", "h1", "h2", "h3", "h4", "h5", "h6"}
        outer: set[Element] = set()
        for element in self.elements:
            if element.tag in blocks:
                outer.update(element.ancestors()[1:])
        return [
            " ".join(e.text.split()) for e in self.elements if e.tag in blocks and e not in outer
        ]


def urls(text: str) -> list[str]:
    """The http(s) URLs in ``text``, in order."""
    return _URL.findall(text)


def _hides(style: dict[str, str]) -> bool:
    zero = ("0", "0px")
    return style.get("display") == "none" or (
        style.get("font-size") in zero and style.get("max-height") in zero
    )
