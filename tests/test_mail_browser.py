"""The digest mail as a reader sees it: its HTML part in Debian's chromium (Playwright) at 600 px
(a desktop client's reading pane) and 375 px (a small phone), light and dark (emulated
``prefers-color-scheme``). Realistic digests stay short, nothing scrolls sideways on a phone, dark
mode is dark, the preheader is never shown. Screenshots go to test-artifacts/mail-*.png.

The digests come from tests/support/mail_samples.py, as in tests/test_mail_layout.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from digestd.digest import Digest
from digestd.render import render_digest
from tests import test_web_browser
from tests.support import mail_samples
from tests.support.mail_html import PADDING

pytestmark = pytest.mark.browser

# The fixtures of the web application's browser tests: Debian's chromium (skipped, or failed in
# CI, when missing) and the screenshot folder.
browser = test_web_browser.browser
artifacts = test_web_browser.artifacts

WIDE, NARROW = 600, 375
MAX_HEIGHT = {"five": 2_000, "many": 7_000}  # px at 600 px wide
BUILDERS = {
    "five": mail_samples.five_paper_digest,
    "many": mail_samples.many_paper_digest,
    "worst": mail_samples.worst_case_digest,
}

# The background an element is seen on: its own or the nearest ancestor's that is not
# transparent, else the canvas (the system colour Canvas in the page's used colour scheme).
EFFECTIVE_BACKGROUND = """(element) => {
  for (let node = element; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour && colour !== 'transparent' && !/^rgba\\(.*,\\s*0\\)$/.test(colour)) return colour;
  }
  const probe = document.createElement('div');
  probe.style.backgroundColor = 'Canvas';
  document.documentElement.appendChild(probe);
  const canvas = getComputedStyle(probe).backgroundColor;
  probe.remove();
  return canvas;
}"""
# The innermost element whose text starts with the given words (whitespace collapsed).
ELEMENT_STARTING_WITH = """(start) => {
  const squash = (text) => text.replace(/\\s+/g, ' ').trim();
  const found = [...document.body.querySelectorAll('*')].filter(
    (e) => squash(e.textContent).startsWith(start));
  return found.length ? found[found.length - 1] : null;
}"""
# The element holding the body's first text that is not only padding.
FIRST_TEXT = """(padding) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const tag = node.parentElement.tagName;
    if (tag === 'STYLE' || tag === 'SCRIPT') continue;
    if ([...node.textContent].some((c) => !padding.includes(c))) return node.parentElement;
  }
  return null;
}"""


@cache
def digest(name: str) -> Digest:
    return BUILDERS[name]()


@cache
def html(name: str) -> str:
    return render_digest(digest(name)).html


@pytest.fixture
def open_mail(browser: Browser) -> Iterator[object]:
    """Opens a sample's HTML part at a width, in a colour scheme; closes the pages after."""
    contexts = []

    def open_(name: str, *, width: int, scheme: str = "light") -> Page:
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        page.set_content(html(name), wait_until="load")
        return page

    yield open_
    for context in contexts:
        context.close()


def luminance(colour: str) -> float:
    """The relative luminance (WCAG) of a computed "rgb(r, g, b)" or "rgba(...)" colour."""
    inside = colour[colour.index("(") + 1 : colour.index(")")].replace(",", " ").split()
    channels = [float(value) / 255 for value in inside[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two computed colours."""
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def scroll_size(page: Page) -> tuple[int, int]:
    """The document's full width and height in CSS pixels."""
    width, height = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    return int(width), int(height)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [WIDE, NARROW])
def test_screenshots_at_both_widths_light_and_dark(
    open_mail,
    artifacts: Path,
    width: int,
    scheme: str,
) -> None:
    page = open_mail("five", width=width, scheme=scheme)
    path = artifacts / f"mail-{width}-{scheme}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 0
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")


@pytest.mark.parametrize("name", ["five", "many"])
def test_a_realistic_digest_is_short_at_600px(open_mail, artifacts: Path, name: str) -> None:
    page = open_mail(name, width=WIDE)
    page.screenshot(path=artifacts / f"mail-{name}-papers-{WIDE}-light.png", full_page=True)
    _, height = scroll_size(page)
    assert height <= MAX_HEIGHT[name], f"{len(digest(name).entries)} papers: {height} px tall"


@pytest.mark.parametrize("name", ["five", "many", "worst"])
def test_nothing_scrolls_sideways_on_a_phone(open_mail, name: str) -> None:
    width, _ = scroll_size(open_mail(name, width=NARROW))
    assert width <= NARROW, f"{width} px wide at {NARROW} px"


def colours_of_first_paper(page: Page) -> dict[str, str]:
    """The colours of the first paper's abstract, its title and the body, as computed."""
    entry = digest("five").entries[0]
    abstract = page.evaluate_handle(ELEMENT_STARTING_WITH, " ".join(entry.abstract.split())[:40])
    title = page.locator(f'a[href="{entry.url}"]').first
    assert abstract.as_element() is not None, "the first abstract is not in the page"
    body = page.locator("body")
    return {
        "abstract": abstract.evaluate("(e) => getComputedStyle(e).color"),
        "abstract background": abstract.evaluate(EFFECTIVE_BACKGROUND),
        "title": title.evaluate("(e) => getComputedStyle(e).color"),
        "title background": title.evaluate(EFFECTIVE_BACKGROUND),
        "body background": body.evaluate(EFFECTIVE_BACKGROUND),
    }


def test_dark_mode_is_light_text_on_a_dark_background(open_mail) -> None:
    colours = colours_of_first_paper(open_mail("five", width=WIDE, scheme="dark"))
    for background in ("body background", "abstract background", "title background"):
        assert luminance(colours[background]) < 0.2, colours
    assert luminance(colours["abstract"]) > 0.5, colours
    assert contrast(colours["title"], colours["title background"]) >= 4.5, colours


def test_light_mode_is_dark_text_on_a_light_background(open_mail) -> None:
    colours = colours_of_first_paper(open_mail("five", width=WIDE, scheme="light"))
    for background in ("abstract background", "title background"):
        assert luminance(colours[background]) > 0.7, colours
    assert luminance(colours["abstract"]) < 0.2, colours
    assert contrast(colours["title"], colours["title background"]) >= 4.5, colours


@pytest.mark.parametrize("width", [WIDE, NARROW])
def test_the_preheader_is_not_shown(open_mail, width: int) -> None:
    page = open_mail("five", width=width)
    first = page.evaluate_handle(FIRST_TEXT, PADDING).as_element()
    assert first is not None
    text = " ".join(first.text_content().split())  # type: ignore[union-attr]
    assert text.startswith(f"{len(digest('five').entries)} papers"), f"first text: {text[:60]!r}"
    shown = first.evaluate(
        "(e) => e.checkVisibility({opacityProperty: true, visibilityProperty: true})"
    )
    box = first.bounding_box()
    assert not shown or box is None or box["height"] == 0, f"the preheader shows: {text[:60]!r}"
    assert first.evaluate("(e) => getComputedStyle(e).fontSize") == "0px"
